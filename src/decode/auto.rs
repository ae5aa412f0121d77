//! `auto`: recognise each record's format from its telltale keys, then decode it with the
//! format's own decoder. An explicit `--format` is faster and stricter; `auto` is for mixed
//! inputs and exploration.

use super::{
    contains, CloudTrailDecoder, DecodeError, Decoder, GithubSecretScanningDecoder,
    K8sAuditDecoder, LeakReportDecoder, NativeDecoder, SecretHasher, VaultAuditDecoder,
};
use crate::event::Event;

#[derive(Debug, Default, Clone)]
pub struct AutoDecoder {
    native: NativeDecoder,
    github: GithubSecretScanningDecoder,
    leaks: LeakReportDecoder,
}

impl AutoDecoder {
    pub fn new(hasher: SecretHasher) -> AutoDecoder {
        AutoDecoder {
            native: NativeDecoder::new(),
            github: GithubSecretScanningDecoder::new(hasher.clone()),
            leaks: LeakReportDecoder::new(hasher),
        }
    }
}

impl Decoder for AutoDecoder {
    fn decode(&mut self, record: &[u8], out: &mut Vec<Event>) -> Result<(), DecodeError> {
        let has = |key: &str| contains(record, key.as_bytes());
        if has("\"eventSource\"")
            || has("\"eventVersion\"")
            || (has("\"eventName\"") && has("\"userIdentity\""))
        {
            CloudTrailDecoder.decode(record, out)
        } else if has("\"audit.k8s.io/") || (has("\"auditID\"") && has("\"verb\"")) {
            K8sAuditDecoder.decode(record, out)
        } else if has("\"secret_type\"") || (has("\"alert\"") && has("\"action\"")) {
            self.github.decode(record, out)
        } else if has("\"type\"") && has("\"request\"") && has("\"time\"") {
            VaultAuditDecoder.decode(record, out)
        } else if has("\"kind\"") && has("\"credential\"") && has("\"ts\"") {
            self.native.decode(record, out)
        } else if has("\"time\"") && (has("\"credential\"") || has("\"secret") || has("\"owner\""))
        {
            self.leaks.decode(record, out)
        } else {
            Err(DecodeError::new(
                "unrecognised record: not native, CloudTrail, Vault audit, Kubernetes audit, GitHub secret scanning or a leak report",
            ))
        }
    }

    fn recycle(&mut self, events: &mut Vec<Event>) {
        self.native.recycle(events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Format;

    #[test]
    fn recognises_each_format() {
        let samples = [
            (
                r#"{"ts":"2026-03-01T00:00:00Z","kind":"revoke","credential":"k"}"#,
                Format::Native,
            ),
            (
                r#"{"eventVersion":"1.08","eventTime":"2026-03-01T00:00:00Z","eventName":"GetObject","eventSource":"s3.amazonaws.com","userIdentity":{"accessKeyId":"AKIA1"}}"#,
                Format::Cloudtrail,
            ),
            (
                r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","verb":"get","user":{"username":"system:serviceaccount:a:b"},"stageTimestamp":"2026-03-01T00:00:00Z"}"#,
                Format::K8s,
            ),
            (
                r#"{"time":"2026-03-01T00:00:00Z","type":"response","auth":{"accessor":"x"},"request":{"path":"secret/a","operation":"read"}}"#,
                Format::Vault,
            ),
            (
                r#"{"action":"created","alert":{"secret":"AKIAIOSFODNN7EXAMPLE","created_at":"2026-03-01T00:00:00Z"}}"#,
                Format::GithubSecretScanning,
            ),
            (
                r#"{"time":"2026-03-01T00:00:00Z","credential":"AKIA1","source":"scanner"}"#,
                Format::Leak,
            ),
        ];
        for (record, format) in samples {
            let mut out = Vec::new();
            AutoDecoder::default()
                .decode(record.as_bytes(), &mut out)
                .unwrap_or_else(|e| panic!("{format}: {e}"));
            assert_eq!(out[0].format, format, "{record}");
        }
        let mut out = Vec::new();
        assert!(AutoDecoder::default()
            .decode(b"{\"hello\":1}", &mut out)
            .is_err());
    }
}
