//! A reference revocation receiver: what a broker's endpoint for credwatch must check before it
//! revokes anything. It verifies the HMAC-SHA256 signature over `timestamp.body`, rejects
//! timestamps more than five minutes off, requires the `Idempotency-Key` header to match the
//! body, and answers a repeated key with `duplicate` instead of revoking twice.
//!
//! Run: `CREDWATCH_WEBHOOK_SECRET=... cargo run --release --example revocation_receiver -- 127.0.0.1:8088`
//! then set `[respond.webhook] url = "http://127.0.0.1:8088/revoke"` and the same secret.

use std::time::Duration;

use credwatch::respond::receiver::{Receiver, RunningReceiver};

fn main() -> anyhow::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8088".into());
    let secret = std::env::var("CREDWATCH_WEBHOOK_SECRET").map_err(|_| {
        anyhow::anyhow!("set CREDWATCH_WEBHOOK_SECRET to the secret credwatch signs with")
    })?;
    let listener = std::net::TcpListener::bind(&address)?;
    let running = RunningReceiver::serve(listener, Receiver::new(secret.as_bytes(), 300))?;
    println!("revocation receiver on {}", running.url());
    let mut reported = 0;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let log = running.receiver.log();
        for request in &log[reported..] {
            println!("{} key={} {}", request.status, request.key, request.body);
        }
        reported = log.len();
    }
}
