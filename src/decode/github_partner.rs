//! GitHub secret scanning partner program deliveries: leak reports signed with ECDSA P-256.
//!
//! A partner registers an endpoint with GitHub; when GitHub finds one of the partner's tokens
//! in a public repository it POSTs a JSON array of matches:
//!
//! ```json
//! [{"token":"AKIA...","type":"aws_access_key_id","url":"https://github.com/o/r/blob/…","source":"content"}]
//! ```
//!
//! with `Github-Public-Key-Identifier` naming one of GitHub's secret-scanning keys and
//! `Github-Public-Key-Signature` holding the base64 DER ECDSA P-256 / SHA-256 signature of the
//! raw body. The keys are the JSON GitHub serves at
//! `https://api.github.com/meta/public_keys/secret_scanning` (saved to a file: credwatch does
//! not fetch at run time). [`PartnerKeys::verify`] checks a delivery before anything in it is
//! believed; [`decode`] turns each match into a `leak` event, the token replaced by its ids
//! as for every raw secret (see [`super::SecretHasher`]). The payload has no time: the edge's
//! receiving time stands for the report's.

use base64::Engine as _;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;

use super::{record_hash_id, Format, SecretHasher};
use crate::event::{Event, Kind};
use crate::time::Timestamp;

/// The header naming the key a delivery was signed with.
pub const KEY_IDENTIFIER_HEADER: &str = "github-public-key-identifier";
/// The header holding the base64 DER signature of the body.
pub const SIGNATURE_HEADER: &str = "github-public-key-signature";

#[derive(Deserialize)]
struct KeysDocument {
    public_keys: Vec<RawKey>,
}

#[derive(Deserialize)]
struct RawKey {
    key_identifier: String,
    key: String,
}

/// GitHub's secret scanning public keys, by identifier.
#[derive(Debug, Clone)]
pub struct PartnerKeys {
    keys: Vec<(String, VerifyingKey)>,
}

impl PartnerKeys {
    /// Parses the JSON of `https://api.github.com/meta/public_keys/secret_scanning`.
    pub fn parse(text: &str) -> Result<PartnerKeys, String> {
        let document: KeysDocument = serde_json::from_str(text).map_err(|e| {
            format!("not GitHub's public keys document ({{\"public_keys\":[...]}}): {e}")
        })?;
        if document.public_keys.is_empty() {
            return Err("the document lists no public keys".into());
        }
        let keys = document
            .public_keys
            .into_iter()
            .map(|raw| {
                VerifyingKey::from_public_key_pem(&raw.key)
                    .map(|key| (raw.key_identifier.clone(), key))
                    .map_err(|e| {
                        format!(
                            "key {}: not a PEM P-256 public key: {e}",
                            raw.key_identifier
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PartnerKeys { keys })
    }

    /// Checks that `signature` (base64 DER) is a valid signature of `body` by the key
    /// `identifier`.
    pub fn verify(&self, identifier: &str, signature: &str, body: &[u8]) -> Result<(), String> {
        let key = self
            .keys
            .iter()
            .find(|(id, _)| id == identifier)
            .map(|(_, key)| key)
            .ok_or_else(|| {
                format!(
                    "unknown GitHub public key identifier `{identifier}` (update the keys file)"
                )
            })?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| "the signature is not base64".to_owned())?;
        let signature =
            Signature::from_der(&der).map_err(|_| "the signature is not DER ECDSA".to_owned())?;
        key.verify(body, &signature)
            .map_err(|_| "the signature does not match the body".to_owned())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Deserialize)]
struct Match {
    token: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// The leak events of a verified delivery received at `received`.
pub fn decode(
    body: &[u8],
    hasher: &SecretHasher,
    received: Timestamp,
) -> Result<Vec<Event>, String> {
    let matches: Vec<Match> = serde_json::from_slice(body).map_err(|e| {
        format!("invalid GitHub partner delivery (a JSON array of token matches): {e}")
    })?;
    let mut events = Vec::with_capacity(matches.len());
    for found in matches {
        if found.token.is_empty() {
            return Err("invalid GitHub partner delivery: a match has an empty `token`".into());
        }
        let credentials = if super::github::is_aws_key_id(&found.token) {
            vec![found.token.clone()]
        } else {
            hasher.ids(&found.token)
        };
        // Stable across redeliveries of the same match, without the token in it.
        let base_id = record_hash_id(
            format!(
                "github-partner\0{}\0{}\0{}",
                credentials[0],
                found.kind.as_deref().unwrap_or(""),
                found.url.as_deref().unwrap_or("")
            )
            .as_bytes(),
        );
        let mut event = Event::new(received, Kind::Leak, String::new());
        event.leak_source = Some(format!(
            "github-secret-scanning-partner ({}{})",
            found.kind.as_deref().unwrap_or("unknown type"),
            found
                .source
                .as_deref()
                .map(|s| format!(", {s}"))
                .unwrap_or_default()
        ));
        event.leak_url = found.url;
        event.event_id = base_id;
        event.format = Format::GithubSecretScanning;
        super::leak_per_id(credentials, event, &mut events);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::EncodePublicKey;

    fn keys_for(signer: &SigningKey, id: &str) -> PartnerKeys {
        let pem = signer
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        let document = serde_json::json!({"public_keys": [{"key_identifier": id, "key": pem, "is_current": true}]});
        PartnerKeys::parse(&document.to_string()).unwrap()
    }

    fn sign(signer: &SigningKey, body: &[u8]) -> String {
        let signature: Signature = signer.sign(body);
        base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
    }

    #[test]
    fn a_signed_delivery_verifies_and_a_tampered_or_foreign_one_does_not() {
        let signer = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let keys = keys_for(&signer, "k1");
        let body = br#"[{"token":"AKIAIOSFODNN7EXAMPLE","type":"aws_access_key_id","url":"https://github.com/o/r/blob/main/.env","source":"content"}]"#;
        let signature = sign(&signer, body);
        keys.verify("k1", &signature, body).unwrap();

        let mut tampered = body.to_vec();
        tampered[12] = b'B';
        assert!(keys
            .verify("k1", &signature, &tampered)
            .unwrap_err()
            .contains("does not match"));
        assert!(keys
            .verify("k2", &signature, body)
            .unwrap_err()
            .contains("unknown GitHub public key identifier `k2`"));
        let other = SigningKey::from_slice(&[9u8; 32]).unwrap();
        assert!(keys.verify("k1", &sign(&other, body), body).is_err());
        assert!(keys.verify("k1", "not base64!", body).is_err());
    }

    #[test]
    fn matches_become_leaks_without_the_token() {
        let received = Timestamp::from_secs(1_772_323_200);
        let body = br#"[{"token":"AKIAIOSFODNN7EXAMPLE","type":"aws_access_key_id","url":"https://github.com/o/r/blob/main/.env","source":"content"},
                        {"token":"ghp_partnerSecretValue123","type":"github_pat"}]"#;
        let events = decode(body, &SecretHasher::default(), received).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].credential, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(events[0].kind, Kind::Leak);
        assert_eq!(events[0].ts, received);
        assert_eq!(
            events[0].leak_source.as_deref(),
            Some("github-secret-scanning-partner (aws_access_key_id, content)")
        );
        assert!(events[1].credential.starts_with("sha256:"));
        let json = serde_json::to_string(&events).unwrap();
        assert!(!json.contains("ghp_partnerSecretValue123"), "{json}");
        assert_eq!(
            events,
            decode(body, &SecretHasher::default(), received).unwrap()
        );
        assert!(decode(b"{}", &SecretHasher::default(), received).is_err());
    }

    #[test]
    fn a_bad_keys_document_is_a_clear_error() {
        assert!(PartnerKeys::parse("{}")
            .unwrap_err()
            .contains("public_keys"));
        let bad = r#"{"public_keys":[{"key_identifier":"x","key":"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}]}"#;
        assert!(PartnerKeys::parse(bad).unwrap_err().contains("key x"));
    }
}
