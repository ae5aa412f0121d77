//! The synthetic organisation: credentials, their habits, and a day of their traffic.
//!
//! Populations: steady services (prod and staging), bursty batch jobs, CI job tokens minted per
//! job with a one-hour expiry, vendor keys used in business hours, developer keys on the corp
//! network, and key rotation (new key issued, old key revoked). Everything is drawn from one
//! seeded ChaCha generator, so a seed is a world. The plan is compact ([`Planned`]) and
//! rendered into [`Event`]s in time order.

use std::net::{IpAddr, Ipv4Addr};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::event::{Event, Kind, Outcome};
use crate::time::{Period, Timestamp};

/// The day the demo simulates.
pub const DAY: &str = "2026-03-02T00:00:00Z";

const SERVICE_ENDPOINTS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "sqs:SendMessage",
    "sqs:ReceiveMessage",
    "kms:Decrypt",
    "secretsmanager:GetSecretValue",
    "lambda:InvokeFunction",
    "sns:Publish",
];
const CI_ENDPOINTS: &[&str] = &[
    "ecr:GetAuthorizationToken",
    "ecr:PutImage",
    "ecr:BatchGetImage",
    "s3:PutObject",
];
/// What one Terraform plan/apply of the platform stack calls: more APIs than a credential's
/// bounded endpoint list holds, so without an exception every apply looks like new endpoints.
const TERRAFORM_ENDPOINTS: &[&str] = &[
    "sts:GetCallerIdentity",
    "ec2:DescribeVpcs",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeInstances",
    "ec2:DescribeRouteTables",
    "iam:GetRole",
    "iam:GetPolicy",
    "iam:ListAttachedRolePolicies",
    "s3:GetBucketPolicy",
    "s3:GetBucketVersioning",
    "s3:ListBucket",
    "rds:DescribeDBInstances",
    "elasticloadbalancing:DescribeLoadBalancers",
    "route53:ListResourceRecordSets",
    "kms:DescribeKey",
    "logs:DescribeLogGroups",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
];

/// The Terraform CI bot's key (it has an exception for `new-endpoint` in the demo).
pub const CI_BOT: &str = "AKIACIBOTTERRAFORM01";

const VENDOR_ENDPOINTS: &[&str] = &[
    "GET /v1/orders",
    "POST /v1/invoices",
    "GET /v1/customers",
    "GET /v1/catalog",
];
const DEV_ENDPOINTS: &[&str] = &[
    "GET /api/projects",
    "GET /api/builds",
    "POST /api/deploys",
    "GET /api/logs",
];

/// What kind of workload a credential belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Service,
    Batch,
    CiJob,
    Vendor,
    Developer,
    /// Terraform applying infrastructure from the CI runners.
    CiBot,
}

/// One credential of the synthetic organisation.
#[derive(Clone, Debug)]
pub struct Credential {
    pub id: String,
    pub role: Role,
    pub owner: String,
    /// The principal that issues it.
    pub issuer: String,
    /// Zones written into its issuance event (empty: learned or from an issuer rule).
    pub declared_zones: Vec<&'static str>,
    /// /24 networks it calls from, as the first three octets.
    pub networks: Vec<[u8; 3]>,
    pub endpoints: Vec<&'static str>,
    pub user_agent: &'static str,
}

/// A planned event, rendered into an [`Event`] when emitted.
#[derive(Clone, Copy, Debug)]
pub struct Planned {
    pub ts: Timestamp,
    pub credential: u32,
    pub action: Action,
}

#[derive(Clone, Copy, Debug)]
pub enum Action {
    Issue {
        expires: Option<Timestamp>,
    },
    Revoke,
    Leak,
    Access {
        ip: IpAddr,
        endpoint: &'static str,
        failed: bool,
    },
}

/// The generated world: credentials and a time-ordered plan of events.
pub struct World {
    pub credentials: Vec<Credential>,
    pub plan: Vec<Planned>,
    pub day_start: Timestamp,
    pub rng: ChaCha8Rng,
}

impl World {
    /// Builds the organisation's credentials and a day of benign traffic.
    pub fn generate(seed: u64, size: usize) -> World {
        let day_start = Timestamp::parse_rfc3339(DAY).unwrap_or(Timestamp::from_secs(0));
        let mut world = World {
            credentials: Vec::with_capacity(size),
            plan: Vec::new(),
            day_start,
            rng: ChaCha8Rng::seed_from_u64(seed),
        };
        // Below 100 credentials some populations would be too small to give every injected
        // scenario its own victim.
        let size = size.max(100);
        let services = size * 45 / 100;
        let batch = size * 15 / 100;
        let ci = size * 25 / 100;
        let vendors = size * 10 / 100;
        let developers = size - services - batch - ci - vendors;
        for i in 0..services {
            world.service(i);
        }
        for i in 0..batch {
            world.batch(i);
        }
        for i in 0..ci {
            world.ci_job(i);
        }
        for i in 0..vendors {
            world.vendor(i);
        }
        for i in 0..developers {
            world.developer(i);
        }
        world.ci_bot();
        world.rotations(services / 10);
        world
    }

    /// Minute `m` of the day, plus `s` seconds.
    pub fn at(&self, minute: f64) -> Timestamp {
        Timestamp::from_micros(self.day_start.micros() + (minute * 60_000_000.0) as i64)
    }

    pub fn add(&mut self, credential: Credential) -> u32 {
        self.credentials.push(credential);
        (self.credentials.len() - 1) as u32
    }

    pub fn push(&mut self, ts: Timestamp, credential: u32, action: Action) {
        self.plan.push(Planned {
            ts,
            credential,
            action,
        });
    }

    /// An address in one of the credential's networks.
    pub fn address(&mut self, credential: u32) -> IpAddr {
        let networks = &self.credentials[credential as usize].networks;
        let [a, b, c] = networks[self.rng.random_range(0..networks.len())];
        IpAddr::V4(Ipv4Addr::new(a, b, c, self.rng.random_range(1..255)))
    }

    /// A call from the credential's usual places to one of its usual endpoints.
    pub fn usual_access(&mut self, credential: u32, ts: Timestamp) {
        let ip = self.address(credential);
        let endpoints = &self.credentials[credential as usize].endpoints;
        let endpoint = endpoints[self.rng.random_range(0..endpoints.len())];
        self.push(
            ts,
            credential,
            Action::Access {
                ip,
                endpoint,
                failed: false,
            },
        );
    }

    /// Poisson-timed usual calls at `per_minute` from `from` to `to` (minutes of the day).
    pub fn steady(&mut self, credential: u32, from: f64, to: f64, per_minute: impl Fn(f64) -> f64) {
        let peak = (from as i64..to.ceil() as i64)
            .map(|m| per_minute(m as f64))
            .fold(0.0_f64, f64::max)
            .max(1e-6);
        let mut minute = from;
        loop {
            let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
            minute += -u.ln() / peak;
            if minute >= to {
                break;
            }
            if self.rng.random::<f64>() * peak <= per_minute(minute) {
                let ts = self.at(minute);
                self.usual_access(credential, ts);
            }
        }
    }

    fn pick_endpoints(
        &mut self,
        pool: &'static [&'static str],
        min: usize,
        max: usize,
    ) -> Vec<&'static str> {
        let count = self.rng.random_range(min..=max).min(pool.len());
        let mut chosen: Vec<&'static str> = Vec::with_capacity(count);
        while chosen.len() < count {
            let endpoint = pool[self.rng.random_range(0..pool.len())];
            if !chosen.contains(&endpoint) {
                chosen.push(endpoint);
            }
        }
        chosen
    }

    fn access_key_id(&mut self, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut id = String::from(prefix);
        for _ in 0..16 {
            id.push(ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char);
        }
        id
    }

    /// Issuance in the first minute of the day (the inventory of long-lived keys).
    fn issue_at_dawn(&mut self, credential: u32) {
        let minute = self.rng.random_range(0.0..1.0);
        let ts = self.at(minute);
        self.issue(credential, ts, None);
    }

    fn issue(&mut self, credential: u32, ts: Timestamp, expires: Option<Timestamp>) {
        self.push(ts, credential, Action::Issue { expires });
    }

    fn service(&mut self, i: usize) {
        let staging = i % 5 == 4;
        let second_octet = if staging { 20 } else { 10 };
        let subnets = self.rng.random_range(1..=2);
        let networks = (0..subnets)
            .map(|_| [10, second_octet, self.rng.random_range(0..200u8)])
            .collect();
        let endpoints = self.pick_endpoints(SERVICE_ENDPOINTS, 2, 6);
        let declared = if self.rng.random_bool(0.7) {
            vec![if staging { "staging" } else { "prod" }]
        } else {
            Vec::new()
        };
        let id = self.access_key_id("AKIA");
        let credential = self.add(Credential {
            id,
            role: Role::Service,
            owner: format!("svc-{i:03}"),
            issuer: "iam-pipeline".into(),
            declared_zones: declared,
            networks,
            endpoints,
            user_agent: "aws-sdk-go-v2/1.30.3",
        });
        self.issue_at_dawn(credential);
        let base = self.rng.random_range(0.3..4.0);
        let phase = self.rng.random_range(0.0..std::f64::consts::TAU);
        self.steady(credential, 1.0, 1440.0, move |m| {
            base * (1.0 + 0.5 * (m / 1440.0 * std::f64::consts::TAU + phase).sin())
        });
    }

    fn batch(&mut self, i: usize) {
        let networks = vec![[10, 10, self.rng.random_range(200..250u8)]];
        let endpoints = self.pick_endpoints(SERVICE_ENDPOINTS, 2, 4);
        let id = self.access_key_id("AKIA");
        let credential = self.add(Credential {
            id,
            role: Role::Batch,
            owner: format!("batch-{i:03}"),
            issuer: "iam-pipeline".into(),
            declared_zones: vec!["prod"],
            networks,
            endpoints,
            user_agent: "Boto3/1.34.0 Python/3.11",
        });
        self.issue_at_dawn(credential);
        let every = [60.0, 120.0, 240.0][i % 3];
        let offset = self.rng.random_range(2.0..every);
        let rate = self.rng.random_range(20.0..150.0);
        let length = self.rng.random_range(4.0..12.0);
        let mut start = offset;
        while start < 1440.0 {
            self.steady(credential, start, (start + length).min(1440.0), |_| rate);
            start += every;
        }
    }

    fn ci_job(&mut self, i: usize) {
        let runner = i % 12;
        let start = self.rng.random_range(5.0..1400.0);
        let credential = self.add(Credential {
            id: format!("ci-job-{:05}-token", 10_000 + i),
            role: Role::CiJob,
            owner: format!("ci-runner-{runner:02}"),
            issuer: format!("ci-runner-{runner:02}"),
            declared_zones: Vec::new(),
            networks: vec![[10, 30, runner as u8]],
            endpoints: CI_ENDPOINTS.to_vec(),
            user_agent: "aws-cli/2.15.0",
        });
        let issued = self.at(start);
        let expires = self.at(start + 60.0);
        self.issue(credential, issued, Some(expires));
        let length = self.rng.random_range(5.0..20.0);
        let rate = self.rng.random_range(1.0..10.0);
        self.steady(credential, start + 0.1, start + length, |_| rate);
    }

    fn vendor(&mut self, i: usize) {
        let acme = i.is_multiple_of(2);
        let endpoints = self.pick_endpoints(VENDOR_ENDPOINTS, 2, 4);
        let credential = self.add(Credential {
            id: format!("vnd-{}-{i:03}", if acme { "acme" } else { "globex" }),
            role: Role::Vendor,
            owner: if acme {
                "acme-portal".into()
            } else {
                "globex-sync".into()
            },
            issuer: if acme {
                "acme-portal".into()
            } else {
                "partner-admin".into()
            },
            declared_zones: if acme {
                Vec::new()
            } else {
                vec!["vendor-globex"]
            },
            networks: vec![if acme { [198, 51, 100] } else { [192, 0, 2] }],
            endpoints,
            user_agent: "python-requests/2.31",
        });
        self.issue_at_dawn(credential);
        let rate = self.rng.random_range(0.5..3.0);
        self.steady(credential, 8.0 * 60.0, 18.0 * 60.0, |_| rate);
    }

    fn developer(&mut self, i: usize) {
        let network = [10, 40, self.rng.random_range(0..50u8)];
        let endpoints = self.pick_endpoints(DEV_ENDPOINTS, 2, 4);
        let credential = self.add(Credential {
            id: format!("dev-{i:03}-pat"),
            role: Role::Developer,
            owner: format!("dev{i:03}@example.com"),
            issuer: "sso".into(),
            declared_zones: vec!["corp"],
            networks: vec![network],
            endpoints,
            user_agent: "curl/8.5.0",
        });
        self.issue_at_dawn(credential);
        let rate = self.rng.random_range(0.1..0.6);
        self.steady(credential, 9.0 * 60.0, 17.5 * 60.0, |_| rate);
    }

    /// The Terraform bot: every 20 minutes a plan/apply from a CI runner calls each of the
    /// stack's APIs a few times within a minute or two.
    fn ci_bot(&mut self) {
        let credential = self.add(Credential {
            id: CI_BOT.into(),
            role: Role::CiBot,
            owner: "terraform-ci".into(),
            issuer: "iam-pipeline".into(),
            declared_zones: vec!["ci"],
            networks: vec![[10, 30, 200]],
            endpoints: TERRAFORM_ENDPOINTS.to_vec(),
            user_agent: "Terraform/1.9.5 (+https://www.terraform.io) terraform-provider-aws/5.60.0",
        });
        self.issue_at_dawn(credential);
        let mut start = 2.0;
        while start < 1430.0 {
            for (i, endpoint) in TERRAFORM_ENDPOINTS.iter().enumerate() {
                for call in 0..3 {
                    let minute = start + i as f64 * 0.05 + call as f64 * 0.4;
                    let ip = self.address(credential);
                    self.push(
                        self.at(minute),
                        credential,
                        Action::Access {
                            ip,
                            endpoint,
                            failed: false,
                        },
                    );
                }
            }
            start += 20.0;
        }
    }

    /// Some services rotate their key: the new key is issued, takes over, the old is revoked.
    fn rotations(&mut self, count: usize) {
        let services: Vec<u32> = (0..self.credentials.len() as u32)
            .filter(|&c| self.credentials[c as usize].role == Role::Service)
            .collect();
        // Rotate the last services so the first ones stay free for injected scenarios.
        for &old in services.iter().rev().take(count) {
            let switch = self.rng.random_range(300.0..1200.0);
            let switch_ts = self.at(switch);
            // The old key stops at the switch; calls planned after it move to the new key.
            let mut new = self.credentials[old as usize].clone();
            new.id = self.access_key_id("AKIA");
            new.owner = format!("{}-rotated", new.owner);
            let new = self.add(new);
            self.issue(new, self.at(switch - 5.0), None);
            for planned in self.plan.iter_mut() {
                if planned.credential == old
                    && planned.ts >= switch_ts
                    && matches!(planned.action, Action::Access { .. })
                {
                    planned.credential = new;
                }
            }
            self.push(self.at(switch + 10.0), old, Action::Revoke);
        }
    }

    /// Sorts the plan by time (stable, so equal times keep generation order).
    pub fn sort(&mut self) {
        self.plan.sort_by_key(|planned| planned.ts);
    }

    /// Renders a planned event.
    pub fn render(&self, planned: &Planned, sequence: u64) -> Event {
        let credential = &self.credentials[planned.credential as usize];
        let kind = match planned.action {
            Action::Issue { .. } => Kind::Issue,
            Action::Revoke => Kind::Revoke,
            Action::Leak => Kind::Leak,
            Action::Access { .. } => Kind::Access,
        };
        let mut event = Event::new(planned.ts, kind, credential.id.clone());
        event.event_id = format!("demo-{sequence:08}");
        match planned.action {
            Action::Issue { expires } => {
                event.principal = Some(credential.issuer.clone());
                event.owner = Some(credential.owner.clone());
                event.expires_at = expires;
                event.allowed_zones = credential
                    .declared_zones
                    .iter()
                    .map(|z| z.to_string())
                    .collect();
            }
            Action::Revoke => event.principal = Some("iam-pipeline".into()),
            Action::Leak => {
                event.leak_source = Some("github-secret-scanning".into());
                event.leak_url =
                    Some("https://github.com/example-org/payments/blob/main/.env".into());
            }
            Action::Access {
                ip,
                endpoint,
                failed,
            } => {
                event.principal = Some(credential.owner.clone());
                event.source_ip = Some(ip.to_string());
                event.endpoint = Some(endpoint.to_owned());
                event.user_agent = Some(credential.user_agent.to_owned());
                event.outcome = if failed {
                    Outcome::Failure
                } else {
                    Outcome::Success
                };
            }
        }
        event
    }

    /// Minutes as a [`Period`].
    pub fn minutes(minutes: f64) -> Period {
        Period::from_micros((minutes * 60_000_000.0) as i64)
    }
}
