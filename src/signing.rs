//! Standard Webhooks signatures: proof for a receiver that a request came from hookd and was not altered.
//!
//! Every request to an endpoint with `signing_secret` carries `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one `v1,` entry per secret, separated by
//! spaces, so a receiver keeps verifying while secrets are rotated (<https://www.standardwebhooks.com/>).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix every Standard Webhooks secret carries.
pub const SECRET_PREFIX: &str = "whsec_";

/// A decoded signing key (the bytes behind `whsec_...`).
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

impl SigningKey {
    /// Decodes `whsec_<base64>`; the error says what is wrong without repeating the secret.
    pub fn from_secret(secret: &str) -> Result<SigningKey, String> {
        let encoded = secret
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| format!("must start with `{SECRET_PREFIX}`"))?;
        let bytes = BASE64
            .decode(encoded)
            .map_err(|_| format!("must be `{SECRET_PREFIX}` followed by base64"))?;
        if bytes.len() < 16 || bytes.len() > 64 {
            return Err(format!(
                "must decode to 16 to 64 bytes (this one has {})",
                bytes.len()
            ));
        }
        Ok(SigningKey(bytes))
    }

    /// `v1,<base64 signature>` of `id.timestamp.body`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        // HMAC accepts keys of any length; the length was also checked when the key was made.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of every length"),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

/// Checks a configured secret; `Err` says why it is unusable.
pub fn check_secret(secret: &str) -> Result<(), String> {
    SigningKey::from_secret(secret).map(|_| ())
}

/// The `webhook-signature` header value: one signature per key, space-separated.
pub fn signature_header(keys: &[SigningKey], id: &str, timestamp: u64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| key.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector published with the Standard Webhooks specification.
    #[test]
    fn matches_the_specification_test_vector() {
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = key.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn any_change_changes_the_signature() {
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let base = key.sign("msg_1", 1, b"{}");
        assert_ne!(base, key.sign("msg_2", 1, b"{}"));
        assert_ne!(base, key.sign("msg_1", 2, b"{}"));
        assert_ne!(base, key.sign("msg_1", 1, b"{ }"));
    }

    #[test]
    fn every_key_signs_for_rotation() {
        let old = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let new = SigningKey::from_secret("whsec_dGhpcyBpcyBhIG5ldyBzZWNyZXQga2V5ISE=").unwrap();
        let header = signature_header(&[old.clone(), new.clone()], "m", 7, b"x");
        assert_eq!(
            header,
            format!("{} {}", old.sign("m", 7, b"x"), new.sign("m", 7, b"x"))
        );
    }

    #[test]
    fn bad_secrets_are_refused_without_echoing_them() {
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!notbase64",
            "whsec_c2hvcnQ=",
        ] {
            let reason = check_secret(bad).unwrap_err();
            assert!(!reason.contains(bad), "{reason}");
        }
        assert!(
            !format!(
                "{:?}",
                SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
            )
            .contains("MfKQ")
        );
    }
}
