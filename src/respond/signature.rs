//! Request signing: HMAC-SHA256 over `timestamp.body`, hex-encoded, as `v1=<hex>`.
//!
//! Receivers recompute the MAC with the shared secret over the `X-Credwatch-Timestamp` header,
//! a dot and the raw body, compare in constant time, and reject timestamps outside their
//! tolerance (replays). See README, "Revocation", for the recipe and a worked example.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::decode::{from_hex, hex_prefix};

type HmacSha256 = Hmac<Sha256>;

pub const TIMESTAMP_HEADER: &str = "x-credwatch-timestamp";
pub const SIGNATURE_HEADER: &str = "x-credwatch-signature";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Credwatch-Signature` value for a request.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("v1={}", hex_prefix(&tag, tag.len()))
}

/// Why a signed request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing or malformed signature header")]
    Malformed,
    #[error("signature does not match the body")]
    Mismatch,
    #[error("timestamp {timestamp} is more than {tolerance}s away from now ({now})")]
    Stale {
        timestamp: i64,
        now: i64,
        tolerance: i64,
    },
}

/// Checks a request: signature over `timestamp.body` (constant time), then freshness.
pub fn verify(
    secret: &[u8],
    timestamp: i64,
    body: &[u8],
    signature: &str,
    now: i64,
    tolerance: i64,
) -> Result<(), VerifyError> {
    let hex = signature
        .strip_prefix("v1=")
        .ok_or(VerifyError::Malformed)?;
    let tag = from_hex(hex).ok_or(VerifyError::Malformed)?;
    mac(secret, timestamp, body)
        .verify_slice(&tag)
        .map_err(|_| VerifyError::Mismatch)?;
    if (now - timestamp).abs() > tolerance {
        return Err(VerifyError::Stale {
            timestamp,
            now,
            tolerance,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_0123456789abcdef";

    #[test]
    fn a_signature_verifies_and_detects_tampering_and_staleness() {
        let body = br#"{"idempotency_key":"k"}"#;
        let signature = sign(SECRET, 1_772_323_200, body);
        assert!(signature.starts_with("v1="));
        assert_eq!(
            verify(SECRET, 1_772_323_200, body, &signature, 1_772_323_210, 300),
            Ok(())
        );
        assert_eq!(
            verify(
                SECRET,
                1_772_323_200,
                b"{\"idempotency_key\":\"x\"}",
                &signature,
                1_772_323_210,
                300
            ),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, 1_772_323_201, body, &signature, 1_772_323_210, 300),
            Err(VerifyError::Mismatch)
        );
        assert!(matches!(
            verify(SECRET, 1_772_323_200, body, &signature, 1_772_324_000, 300),
            Err(VerifyError::Stale { .. })
        ));
        assert_eq!(
            verify(
                b"another-secret-value",
                1_772_323_200,
                body,
                &signature,
                1_772_323_210,
                300
            ),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(
                SECRET,
                1_772_323_200,
                body,
                "sha256=abc",
                1_772_323_210,
                300
            ),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn a_non_ascii_signature_is_malformed_not_a_panic() {
        assert_eq!(
            verify(SECRET, 1, b"{}", "v1=\u{20ac}a", 1, 300),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn agrees_with_python_hmac_and_the_readme_example() {
        assert_eq!(
            sign(SECRET, 1_772_323_200, br#"{"credential":"AKIAEXAMPLE"}"#),
            "v1=6acc05dfe7fa8758e166660f0604f3cb65eeda5438eadbedea85ae3897a9792c"
        );
        // README, "Revocation", worked example.
        let body = br#"{"idempotency_key":"11f26e4556a3b899510b77cd539733fe","credential":"AKIAEXAMPLE000000001"}"#;
        assert_eq!(
            sign(SECRET, 1_772_324_880, body),
            "v1=5feb34881d835a79ebb54c011bcbb4fadadeacb3c86930da5619a5b4b93af6e9"
        );
    }
}
