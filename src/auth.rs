//! Authenticated messages: every election message carries an HMAC-SHA256 over its subject and
//! bytes, made with a cluster key and naming that key, so a stranger who can publish on the
//! election subjects cannot speak for an agent.
//!
//! A sealed message is `LH1 <key id> <64 hex digits of MAC>\n` followed by the message's own
//! bytes. The MAC covers the subject too, so an authentic message cannot be moved to another
//! subject (a grant to one candidate's inbox replayed into another's). Several keys may be
//! loaded: the first signs, every one verifies, so keys can be rotated without a flag day
//! (add the new key second everywhere, then first everywhere, then drop the old one).
//!
//! Why HMAC rather than NATS nkeys signatures: every agent of a cluster is equally trusted, so
//! a shared secret loses nothing, and a MAC is a few hundred nanoseconds against tens of
//! microseconds for an Ed25519 verification per message per receiver; the keys are
//! distributed as files, as a NATS credentials file would be.
//!
//! An authentic message replayed later (a client flushing its reconnect buffer, or a stranger
//! replaying what it heard) is accepted by design: the protocol is safe against it, which the
//! simulator's `replay` fault checks. Grants name the attempt they answer (a random number per
//! attempt), recovery answers echo a random nonce, heartbeats and requests from an older
//! incarnation are ignored once a newer one is known, and a release ends only the promise of
//! the same incarnation and token, which that incarnation never asks for again.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

const MAGIC: &[u8] = b"LH1 ";

/// The shortest secret accepted, in bytes.
pub(crate) const MIN_SECRET: usize = 16;

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// It carries no MAC.
    #[error("message is not authenticated")]
    Unauthenticated,
    /// It names a key this agent does not have.
    #[error("message signed with unknown key {0:?}")]
    UnknownKey(String),
    /// Its MAC does not match its subject and bytes.
    #[error("message has a bad MAC")]
    BadMac,
}

/// The keys of a cluster: the first signs, every one verifies.
#[derive(Clone)]
pub struct ClusterKeys {
    keys: Vec<(String, Vec<u8>)>,
}

impl fmt::Debug for ClusterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secrets.
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("ClusterKeys").field("ids", &ids).finish()
    }
}

impl ClusterKeys {
    /// Keys from `key-id:hex-secret` lines (blank lines and `#` comments ignored). A key ID is
    /// 1 to 32 of `A-Z a-z 0-9 _ -`; a secret at least 16 bytes. Errors name the
    /// line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys: Vec<(String, Vec<u8>)> = Vec::new();
        for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, hex_secret) = line
                .split_once(':')
                .ok_or_else(|| format!("line {n}: expected key-id:hex-secret"))?;
            let id_ok = !id.is_empty()
                && id.len() <= 32
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !id_ok {
                return Err(format!("line {n}: key id {id:?} must be 1 to 32 of A-Z a-z 0-9 _ -"));
            }
            let secret = hex::decode(hex_secret.trim()).map_err(|e| format!("line {n}: secret is not hex: {e}"))?;
            if secret.len() < MIN_SECRET {
                return Err(format!(
                    "line {n}: secret of key {id:?} is {} bytes; at least {MIN_SECRET} are needed",
                    secret.len()
                ));
            }
            if keys.iter().any(|(k, _)| k == id) {
                return Err(format!("line {n}: key id {id:?} appears twice"));
            }
            keys.push((id.to_string(), secret));
        }
        if keys.is_empty() {
            return Err("no key: expected at least one key-id:hex-secret line".into());
        }
        Ok(ClusterKeys { keys })
    }

    /// Reads keys from a file (see [`ClusterKeys::parse`]); errors name the file.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The ID of the signing key.
    pub fn signing_id(&self) -> &str {
        &self.keys[0].0
    }

    fn mac(secret: &[u8], subject: &str, body: &[u8]) -> HmacSha256 {
        // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
        let mut m =
            <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        m.update(&(subject.len() as u64).to_be_bytes());
        m.update(subject.as_bytes());
        m.update(body);
        m
    }

    /// `body`, sealed for `subject` with the signing key.
    pub fn seal(&self, subject: &str, body: &[u8]) -> Bytes {
        let (id, secret) = &self.keys[0];
        let tag = Self::mac(secret, subject, body).finalize().into_bytes();
        let mut out = Vec::with_capacity(MAGIC.len() + id.len() + 66 + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(id.as_bytes());
        out.push(b' ');
        out.extend_from_slice(hex::encode(tag).as_bytes());
        out.push(b'\n');
        out.extend_from_slice(body);
        Bytes::from(out)
    }

    /// The body of a message sealed for `subject` with one of these keys.
    pub fn open(&self, subject: &str, sealed: &Bytes) -> Result<Bytes, AuthError> {
        let rest = sealed.strip_prefix(MAGIC).ok_or(AuthError::Unauthenticated)?;
        let nl = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(AuthError::Unauthenticated)?;
        let head = std::str::from_utf8(&rest[..nl]).map_err(|_| AuthError::Unauthenticated)?;
        let (id, tag_hex) = head.split_once(' ').ok_or(AuthError::Unauthenticated)?;
        let (_, secret) = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .ok_or_else(|| AuthError::UnknownKey(id.chars().take(32).collect()))?;
        let tag = hex::decode(tag_hex).map_err(|_| AuthError::BadMac)?;
        let start = MAGIC.len() + nl + 1;
        let body = sealed.slice(start..);
        // Constant-time comparison.
        Self::mac(secret, subject, &body)
            .verify_slice(&tag)
            .map_err(|_| AuthError::BadMac)?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEYS: &str =
        "# rotation: new first\nk2:00112233445566778899aabbccddeeff\nk1:ffeeddccbbaa99887766554433221100\n";

    #[test]
    fn sealed_messages_open_with_any_loaded_key_and_only_for_their_subject() {
        let both = ClusterKeys::parse(KEYS).unwrap();
        let old = ClusterKeys::parse("k1:ffeeddccbbaa99887766554433221100").unwrap();
        assert_eq!(both.signing_id(), "k2");
        let m = old.seal("p.hb", b"{\"a\":1}");
        assert_eq!(
            both.open("p.hb", &m).unwrap(),
            Bytes::from_static(b"{\"a\":1}"),
            "old key verifies"
        );
        assert_eq!(
            both.open("p.lease.release", &m),
            Err(AuthError::BadMac),
            "bound to its subject"
        );
        let new = both.seal("p.hb", b"x");
        assert_eq!(old.open("p.hb", &new), Err(AuthError::UnknownKey("k2".into())));
        assert_eq!(
            both.open("p.hb", &Bytes::from_static(b"{\"a\":1}")),
            Err(AuthError::Unauthenticated)
        );
        let mut tampered = new.to_vec();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(both.open("p.hb", &Bytes::from(tampered)), Err(AuthError::BadMac));
        assert!(!format!("{both:?}").contains("0011"), "Debug never shows a secret");
    }

    #[test]
    fn bad_key_files_name_the_line() {
        for (text, want) in [
            ("", "no key"),
            ("k1", "line 1: expected key-id:hex-secret"),
            ("\nk 1:00112233445566778899aabbccddeeff", "line 2: key id"),
            ("k1:0011", "line 1: secret of key \"k1\" is 2 bytes"),
            ("k1:zz112233445566778899aabbccddeeff", "line 1: secret is not hex"),
            (
                "k1:00112233445566778899aabbccddeeff\nk1:00112233445566778899aabbccddeeff",
                "line 2: key id \"k1\" appears twice",
            ),
        ] {
            let e = ClusterKeys::parse(text).unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    proptest! {
        #[test]
        fn no_bytes_from_a_stranger_open_or_panic(junk in proptest::collection::vec(any::<u8>(), 0..200), prefix in prop_oneof![Just(b"LH1 k2 ".to_vec()), Just(b"LH1 ".to_vec()), Just(Vec::new())]) {
            let keys = ClusterKeys::parse(KEYS).unwrap();
            let mut m = prefix;
            m.extend(junk);
            prop_assert!(keys.open("p.hb", &Bytes::from(m)).is_err());
        }

        #[test]
        fn every_body_round_trips(body in proptest::collection::vec(any::<u8>(), 0..300), subject in "[a-z.]{1,40}") {
            let keys = ClusterKeys::parse(KEYS).unwrap();
            prop_assert_eq!(keys.open(&subject, &keys.seal(&subject, &body)).unwrap(), Bytes::from(body));
        }
    }
}
