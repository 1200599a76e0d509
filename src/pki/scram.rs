//! PostgreSQL SCRAM-SHA-256 verifiers (`SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`),
//! computed locally so PgBouncer's auth file and `CREATE ROLE … PASSWORD` never carry plaintext.
//! The math of RFC 5802/7677, as PostgreSQL's `scram_build_secret` does it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::error::PkiError;
use super::secret::Secret;

/// PostgreSQL's default `scram_iterations`.
pub const SCRAM_ITERATIONS: u32 = 4096;

/// The verifier PostgreSQL would store for `password` with `salt` and `iterations`.
///
/// Only ASCII passwords are accepted: PostgreSQL SASLpreps the password first, which is the
/// identity on ASCII (pgha's generated passwords are alphanumeric).
pub fn scram_sha256_verifier(password: &str, salt: &[u8], iterations: u32) -> Result<Secret<String>, PkiError> {
    if !password.is_ascii() {
        return Err(PkiError::NonAsciiPassword);
    }
    let keys = ScramKeys::derive(password.as_bytes(), salt, iterations);
    Ok(Secret::new(format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        B64.encode(salt),
        B64.encode(keys.stored_key),
        B64.encode(keys.server_key)
    )))
}

/// StoredKey and ServerKey of RFC 5802 §3.
struct ScramKeys {
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl ScramKeys {
    fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let salted: [u8; 32] = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        ScramKeys {
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3: user "user", password "pencil". The verifier must let the server produce the
    /// RFC's ServerSignature and accept its ClientProof.
    #[test]
    fn rfc7677_vector() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("b64");
        let v = scram_sha256_verifier("pencil", &salt, 4096).expect("ascii");
        let v = v.expose();
        let (head, keys) = v.split_once('$').and_then(|(_, r)| r.split_once('$')).expect("format");
        assert_eq!(head, "4096:W22ZaJ0SNY7soEsUEjb6gQ==");
        let (stored, server) = keys.split_once(':').expect("keys");
        let stored = B64.decode(stored).expect("b64");
        let server = B64.decode(server).expect("b64");

        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_signature = hmac(&server, auth_message.as_bytes());
        assert_eq!(
            B64.encode(server_signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );

        // The server's check of the client proof: H(proof XOR HMAC(StoredKey, msg)) == StoredKey.
        let proof = B64.decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").expect("b64");
        let client_signature = hmac(&stored, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(client_signature).map(|(a, b)| a ^ b).collect();
        assert_eq!(Sha256::digest(&client_key).as_slice(), stored.as_slice());
    }

    /// A verifier PostgreSQL 15.18 stored verbatim (`CREATE ROLE … PASSWORD '<verifier>'`) and
    /// then accepted a SCRAM login with the password against (and refused a wrong one).
    #[test]
    fn postgresql_accepted_vector() {
        let v = scram_sha256_verifier("Abc123xyzPgha", b"0123456789abcdef", 4096).expect("ascii");
        assert_eq!(
            v.expose(),
            "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$uwm8CHtb2gN00fFmaY58H5jGDvkMTCkXt+uIM2Y0b5w=:\
             IFQ/5JANrAEP31F7yrV3nU8trz8KCP+v/+8wWMVtkwM="
        );
    }

    #[test]
    fn non_ascii_is_refused() {
        assert!(scram_sha256_verifier("pässword", b"salt", 4096).is_err());
    }
}
