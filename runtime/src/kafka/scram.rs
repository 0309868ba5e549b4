//! The client side of SCRAM (RFC 5802, with SHA-256 per RFC 7677 or SHA-512):
//! three messages, no channel binding, the server's signature checked at the
//! end so a broker that does not know the password cannot pass for one that
//! does. Pure: the caller carries the messages and supplies the nonce.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};

/// More iterations than any broker asks for (Kafka allows 4,096 to 16,384): a
/// server that demands more is refused rather than burning the CPU.
const MAX_ITERATIONS: u32 = 1 << 20;

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl Hash {
    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Hash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Hash::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Hash::Sha256 => hmac::HMAC_SHA256,
            Hash::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha512 => &digest::SHA512,
        }
    }

    fn len(self) -> usize {
        self.digest().output_len()
    }
}

/// A SCRAM exchange in progress, from the client's first message on.
pub(crate) struct Scram {
    hash: Hash,
    password: String,
    nonce: String,
    /// `n=<user>,r=<nonce>`: part of what both sides sign.
    first_bare: String,
}

/// What the client expects of the server's final message.
pub(crate) struct Final {
    /// `ServerSignature`, base64 as the server sends it.
    signature: String,
}

impl Scram {
    /// Starts an exchange as `username` with the client nonce `nonce`
    /// (printable, no comma; random per exchange).
    pub fn new(hash: Hash, username: &str, password: &str, nonce: &str) -> Self {
        // RFC 5802 5.1: '=' and ',' in a name are escaped.
        let name = username.replace('=', "=3D").replace(',', "=2C");
        Scram {
            hash,
            password: password.to_string(),
            nonce: nonce.to_string(),
            first_bare: format!("n={name},r={nonce}"),
        }
    }

    /// The client's first message: no channel binding, no authorization id.
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    /// The client's final message, with its proof, answering the server's
    /// first message; and what the server's final message must hold.
    pub fn client_final(&self, server_first: &str) -> Result<(String, Final), String> {
        let field = |name: char| {
            server_first
                .split(',')
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .ok_or_else(|| format!("the server's first message lacks {name}=: {server_first}"))
        };
        if server_first.starts_with("m=") {
            return Err(format!("the server requires an extension: {server_first}"));
        }
        let nonce = field('r')?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("the server's nonce does not extend the client's".into());
        }
        let salt = BASE64
            .decode(field('s')?)
            .map_err(|e| format!("the server's salt is not base64: {e}"))?;
        let iterations = field('i')?
            .parse::<u32>()
            .ok()
            .filter(|i| *i <= MAX_ITERATIONS)
            .and_then(NonZeroU32::new)
            .ok_or_else(|| {
                format!(
                    "the server asks for {} iterations",
                    field('i').unwrap_or("")
                )
            })?;

        let mut salted = vec![0u8; self.hash.len()];
        pbkdf2::derive(
            self.hash.pbkdf2(),
            iterations,
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let salted = hmac::Key::new(self.hash.hmac(), &salted);
        let client_key = hmac::sign(&salted, b"Client Key");
        let stored_key = digest::digest(self.hash.digest(), client_key.as_ref());
        // c=biws is base64 of "n,,": the header of the first message.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let client_signature = hmac::sign(
            &hmac::Key::new(self.hash.hmac(), stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac::sign(&salted, b"Server Key");
        let server_signature = hmac::sign(
            &hmac::Key::new(self.hash.hmac(), server_key.as_ref()),
            auth_message.as_bytes(),
        );
        Ok((
            format!("{without_proof},p={}", BASE64.encode(proof)),
            Final {
                signature: BASE64.encode(server_signature.as_ref()),
            },
        ))
    }
}

impl Final {
    /// Checks the server's final message: its signature proves it knows the
    /// password's salted form; `e=` is the server's refusal.
    pub fn check(&self, server_final: &str) -> Result<(), String> {
        if let Some(error) = server_final.strip_prefix("e=") {
            return Err(format!("the server refused: {error}"));
        }
        let signature = server_final
            .split(',')
            .find_map(|f| f.strip_prefix("v="))
            .ok_or_else(|| format!("the server's final message lacks v=: {server_final}"))?;
        if signature != self.signature {
            return Err("the server's signature is wrong: it does not know the password".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    #[test]
    fn scram_sha_256_matches_the_rfc_7677_example() {
        let scram = Scram::new(Hash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(scram.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let (client_final, expected) = scram.client_final(server_first).unwrap();
        assert_eq!(
            client_final,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        expected
            .check("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        let forged = expected.check("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert!(forged.unwrap_err().contains("does not know the password"));
        let refused = expected.check("e=invalid-proof");
        assert!(refused.unwrap_err().contains("invalid-proof"));
    }

    #[test]
    fn names_with_commas_and_equals_signs_are_escaped() {
        let scram = Scram::new(Hash::Sha512, "a=b,c", "pw", "nonce");
        assert_eq!(scram.client_first(), "n,,n=a=3Db=2Cc,r=nonce");
    }

    #[test]
    fn scram_sha_512_proofs_are_sha_512_sized() {
        let scram = Scram::new(Hash::Sha512, "alice", "pw", "abc");
        let (client_final, _) = scram.client_final("r=abcdef,s=c2FsdA==,i=4096").unwrap();
        let proof = client_final.rsplit_once("p=").unwrap().1;
        assert_eq!(BASE64.decode(proof).unwrap().len(), 64);
    }

    #[test]
    fn a_server_first_message_that_cannot_be_trusted_is_refused() {
        let scram = Scram::new(Hash::Sha256, "user", "pencil", "abc");
        let cases = [
            ("r=xyz123,s=c2FsdA==,i=4096", "does not extend"),
            ("r=abc,s=c2FsdA==,i=4096", "does not extend"),
            ("r=abcdef,s=!!,i=4096", "not base64"),
            ("r=abcdef,s=c2FsdA==,i=0", "iterations"),
            ("r=abcdef,s=c2FsdA==,i=99999999", "iterations"),
            ("r=abcdef,s=c2FsdA==", "lacks i="),
            ("m=ext,r=abcdef,s=c2FsdA==,i=4096", "extension"),
        ];
        for (server_first, expected) in cases {
            let error = scram.client_final(server_first).err().unwrap_or_default();
            assert!(error.contains(expected), "{server_first}: {error}");
        }
    }
}
