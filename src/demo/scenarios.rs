//! Injected misuse: one labeled scenario per detector, planted in the synthetic world.
//!
//! Each scenario picks a victim credential that behaves normally all day, adds the events that
//! betray misuse, and records the ground truth: which detector should fire, for which
//! credential, from when.

use std::net::{IpAddr, Ipv4Addr};

use super::world::{Action, Credential, Role, World};
use crate::detect::DetectorKind;
use crate::time::Timestamp;

/// Ground truth for one injected misuse.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub detector: DetectorKind,
    pub credential: String,
    /// When the misuse began (the first betraying event).
    pub start: Timestamp,
}

fn internet(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, last))
}

/// Plants every scenario and returns the ground truth, in detector order.
pub fn inject(world: &mut World) -> Vec<Scenario> {
    let mut victims = Victims::new(world);
    let mut scenarios = Vec::new();
    let access =
        |world: &mut World, credential: u32, minute: f64, ip: IpAddr, endpoint: &'static str| {
            let ts = world.at(minute);
            world.push(
                ts,
                credential,
                Action::Access {
                    ip,
                    endpoint,
                    failed: false,
                },
            );
            ts
        };

    // A prod service key, declared for prod, called from the internet.
    let victim = victims.service(world, Some("prod"));
    let start = access(world, victim, 600.0, internet(10), "s3:GetObject");
    access(world, victim, 601.0, internet(10), "s3:ListBucket");
    scenarios.push(scenario(
        world,
        "prod key used from the internet",
        DetectorKind::ZoneViolation,
        victim,
        start,
    ));

    // A developer's key used from corp and, ninety seconds later, from the internet.
    let victim = victims.next(world, Role::Developer);
    let corp = world.address(victim);
    access(world, victim, 900.0, corp, "GET /api/projects");
    let start = access(world, victim, 901.5, internet(20), "GET /api/projects");
    scenarios.push(scenario(
        world,
        "developer key in two places at once",
        DetectorKind::ConcurrentZones,
        victim,
        start,
    ));

    // A service key pushed to a public repository while the service keeps using it; secret
    // scanning reports it at 11:00 and an attacker tries it from the internet 17 minutes later.
    // The service's own calls after the report raise use-after-leak first; escalation makes the
    // attacker's first call from a new zone an alert of its own instead of a folded repeat.
    let victim = victims.service(world, Some("prod"));
    let leak = world.at(660.0);
    world.push(leak, victim, Action::Leak);
    let start = access(world, victim, 677.0, internet(66), "sts:GetCallerIdentity");
    access(world, victim, 678.0, internet(66), "s3:ListBuckets");
    scenarios.push(scenario(
        world,
        "leaked key tried 17 min after report",
        DetectorKind::UseAfterLeak,
        victim,
        start,
    ));

    // A service key an attacker found before the scanner did: tried from the internet at 14:10,
    // reported leaked at 15:40. The report looks back and names the earlier internet use.
    let victim = victims.service(world, Some("prod"));
    access(world, victim, 850.0, internet(88), "sts:GetCallerIdentity");
    let report = world.at(940.0);
    world.push(report, victim, Action::Leak);
    scenarios.push(scenario(
        world,
        "key used before its leak report",
        DetectorKind::LeakLookback,
        victim,
        report,
    ));

    // A rotated key still used by a forgotten cron job 90 minutes after revocation.
    let (victim, revoked) = victims.revoked(world);
    let ip = world.address(victim);
    let start = access(world, victim, revoked + 90.0, ip, "s3:GetObject");
    scenarios.push(scenario(
        world,
        "rotated key used after revocation",
        DetectorKind::UseAfterRevoke,
        victim,
        start,
    ));

    // A CI job token replayed half an hour after it expired.
    let (victim, expired) = victims.expiring(world);
    let ip = world.address(victim);
    let start = access(world, victim, expired + 30.0, ip, "ecr:PutImage");
    scenarios.push(scenario(
        world,
        "CI token used after expiry",
        DetectorKind::UseAfterExpiry,
        victim,
        start,
    ));

    // A prod service key called from a prod subnet it never used (a compromised neighbour).
    let victim = victims.service(world, Some("prod"));
    let start = access(
        world,
        victim,
        720.0,
        IpAddr::V4(Ipv4Addr::new(10, 10, 251, 9)),
        world_endpoint(world, victim),
    );
    scenarios.push(scenario(
        world,
        "service key from a new prod subnet",
        DetectorKind::NewNetwork,
        victim,
        start,
    ));

    // A service key creating IAM access keys from its usual network.
    let victim = victims.service(world, Some("prod"));
    let ip = world.address(victim);
    let start = access(world, victim, 780.0, ip, "iam:CreateAccessKey");
    scenarios.push(scenario(
        world,
        "service key creates IAM keys",
        DetectorKind::NewEndpoint,
        victim,
        start,
    ));

    // A steady service key suddenly making 400 calls in a minute from its usual network.
    let victim = victims.service(world, Some("prod"));
    let mut start = None;
    for i in 0..400 {
        let ip = world.address(victim);
        let endpoint = world_endpoint(world, victim);
        let ts = access(world, victim, 840.0 + i as f64 / 400.0, ip, endpoint);
        start.get_or_insert(ts);
    }
    let start = start.unwrap_or(world.at(840.0));
    scenarios.push(scenario(
        world,
        "call-rate spike (400 calls/min)",
        DetectorKind::RateSpike,
        victim,
        start,
    ));

    // A key last used six weeks ago wakes up.
    let victim = world.add(Credential {
        id: "AKIAOLDMIGRATIONKEY1".into(),
        role: Role::Service,
        owner: "legacy-migration".into(),
        issuer: "iam-admin".into(),
        declared_zones: Vec::new(),
        networks: vec![[10, 10, 199]],
        endpoints: vec!["s3:GetObject"],
        user_agent: "aws-cli/1.18.0",
    });
    let history = world.at(-42.0 * 1440.0);
    world.push(history, victim, Action::Issue { expires: None });
    for i in 0..5 {
        let ts = world.at(-41.0 * 1440.0 + i as f64);
        world.usual_access(victim, ts);
    }
    let start = access(world, victim, 540.0, internet(30), "s3:GetObject");
    scenarios.push(scenario(
        world,
        "six-week-old key wakes up",
        DetectorKind::DormantReuse,
        victim,
        start,
    ));

    // A key nobody issued.
    let victim = world.add(Credential {
        id: "AKIAZZZNEVERISSUED01".into(),
        role: Role::Service,
        owner: "unknown".into(),
        issuer: "unknown".into(),
        declared_zones: Vec::new(),
        networks: vec![[203, 0, 113]],
        endpoints: vec!["sts:GetCallerIdentity"],
        user_agent: "python-requests/2.31",
    });
    let start = access(world, victim, 960.0, internet(40), "sts:GetCallerIdentity");
    scenarios.push(scenario(
        world,
        "key that was never issued",
        DetectorKind::UnknownCredential,
        victim,
        start,
    ));

    // A decoy key planted in a CI variable; someone who dumped the CI secrets tries it.
    let victim = world.add(Credential {
        id: "AKIACANARYCIDECOY001".into(),
        role: Role::Service,
        owner: "canary".into(),
        issuer: "iam-pipeline".into(),
        declared_zones: vec!["ci"],
        networks: vec![[203, 0, 113]],
        endpoints: vec!["sts:GetCallerIdentity"],
        user_agent: "aws-cli/2.15.0",
    });
    let planted = world.at(1.0);
    world.push(planted, victim, Action::Issue { expires: None });
    let start = access(world, victim, 1170.0, internet(77), "sts:GetCallerIdentity");
    scenarios.push(scenario(
        world,
        "decoy key from a CI variable tried",
        DetectorKind::Canary,
        victim,
        start,
    ));

    scenarios
}

fn scenario(
    world: &World,
    name: &'static str,
    detector: DetectorKind,
    victim: u32,
    start: Timestamp,
) -> Scenario {
    Scenario {
        name,
        detector,
        credential: world.credentials[victim as usize].id.clone(),
        start,
    }
}

fn world_endpoint(world: &World, credential: u32) -> &'static str {
    world.credentials[credential as usize].endpoints[0]
}

/// Hands out distinct victims.
struct Victims {
    taken: Vec<u32>,
}

impl Victims {
    fn new(_world: &World) -> Self {
        Victims { taken: Vec::new() }
    }

    fn take(&mut self, credential: u32) -> u32 {
        self.taken.push(credential);
        credential
    }

    fn candidates<'w>(&'w self, world: &'w World, role: Role) -> impl Iterator<Item = u32> + 'w {
        (0..world.credentials.len() as u32).filter(move |&c| {
            world.credentials[c as usize].role == role && !self.taken.contains(&c)
        })
    }

    fn next(&mut self, world: &World, role: Role) -> u32 {
        let found = self.candidates(world, role).next().unwrap_or(0);
        self.take(found)
    }

    /// A service that is never rotated, optionally declared for `zone`.
    fn service(&mut self, world: &World, zone: Option<&str>) -> u32 {
        let revoked: Vec<u32> = world
            .plan
            .iter()
            .filter(|p| matches!(p.action, Action::Revoke))
            .map(|p| p.credential)
            .collect();
        let found = self
            .candidates(world, Role::Service)
            .find(|&c| {
                let credential = &world.credentials[c as usize];
                !revoked.contains(&c)
                    && !credential.owner.ends_with("-rotated")
                    && zone.is_none_or(|z| credential.declared_zones == [z])
            })
            .unwrap_or(0);
        self.take(found)
    }

    /// A revoked (rotated-out) key and the minute of its revocation.
    fn revoked(&mut self, world: &World) -> (u32, f64) {
        let found = world
            .plan
            .iter()
            .find(|p| matches!(p.action, Action::Revoke) && !self.taken.contains(&p.credential))
            .map(|p| (p.credential, minute_of(world, p.ts)))
            .unwrap_or((0, 0.0));
        (self.take(found.0), found.1)
    }

    /// A CI token whose expiry falls early enough in the day, and its expiry minute.
    fn expiring(&mut self, world: &World) -> (u32, f64) {
        let found = world
            .plan
            .iter()
            .filter_map(|p| match p.action {
                Action::Issue {
                    expires: Some(expires),
                } if !self.taken.contains(&p.credential) => {
                    Some((p.credential, minute_of(world, expires)))
                }
                _ => None,
            })
            .find(|&(_, expires)| expires < 1300.0)
            .unwrap_or((0, 0.0));
        (self.take(found.0), found.1)
    }
}

fn minute_of(world: &World, ts: Timestamp) -> f64 {
    ts.since(world.day_start).as_minutes_f64()
}
