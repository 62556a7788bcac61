//! `netlog token`: make bearer secrets and the hashes the config stores.
//!
//! `netlog token new` draws [`SECRET_BYTES`] from the operating system's
//! random source and prints them base64url-encoded (no padding), with their
//! SHA-256 and a `[[auth.tokens]]` snippet to paste into the config. `netlog
//! token hash` reads a secret from standard input (one trailing newline is
//! dropped, so `echo "$SECRET" | netlog token hash` works) and prints its
//! SHA-256 in hex. Secrets are never taken as arguments, where they would
//! land in shell history and the process list.

use std::io::{Read, Write};
use std::process::ExitCode;

use base64::Engine;
use clap::Subcommand;

use crate::config::auth::{check_token_name, digest_hex, secret_digest};

/// Random bytes in a fresh secret (256 bits).
pub const SECRET_BYTES: usize = 32;
/// Longest secret `token hash` reads.
pub const MAX_SECRET_BYTES: usize = 4096;
/// Below this many characters `token hash` warns that a secret is guessable.
pub const SHORT_SECRET_CHARS: usize = 16;

/// `netlog token ...`.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Prints a fresh random secret, its SHA-256 and a config snippet.
    New {
        /// The token's name in the snippet.
        #[arg(long, default_value = "client")]
        name: String,
    },
    /// Reads a secret from standard input and prints its SHA-256 in hex.
    Hash,
}

/// Why a token command failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the secret from standard input: {0}")]
    Stdin(#[source] std::io::Error),
    #[error("no secret on standard input")]
    Empty,
    #[error("the secret is over {MAX_SECRET_BYTES} bytes")]
    TooLong,
    #[error(
        "the secret holds a space or a control character, which cannot travel in an \
         Authorization header"
    )]
    Unprintable,
    #[error("the operating system's random source failed: {0}")]
    Random(#[source] getrandom::Error),
    #[error("--name: {0}")]
    Name(String),
}

/// Runs a token command, printing to stdout (errors to stderr).
pub fn run(command: &TokenCommand) -> ExitCode {
    let result = match command {
        TokenCommand::New { name } => new_token(name),
        TokenCommand::Hash => read_secret(std::io::stdin().lock()).map(|secret| {
            if secret.len() < SHORT_SECRET_CHARS {
                eprintln!(
                    "netlog: warning: a secret under {SHORT_SECRET_CHARS} characters is easy \
                     to guess; `netlog token new` makes a strong one"
                );
            }
            format!("{}\n", digest_hex(&secret_digest(&secret)))
        }),
    };
    match result {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netlog: token: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads a secret: everything on `input` minus one trailing `\n` or `\r\n`;
/// refused when empty, too long, or not fit for a header.
pub fn read_secret(input: impl Read) -> Result<Vec<u8>, TokenError> {
    let mut secret = Vec::new();
    input
        .take(MAX_SECRET_BYTES as u64 + 2)
        .read_to_end(&mut secret)
        .map_err(TokenError::Stdin)?;
    if secret.last() == Some(&b'\n') {
        secret.pop();
        if secret.last() == Some(&b'\r') {
            secret.pop();
        }
    }
    if secret.is_empty() {
        return Err(TokenError::Empty);
    }
    if secret.len() > MAX_SECRET_BYTES {
        return Err(TokenError::TooLong);
    }
    if secret.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(TokenError::Unprintable);
    }
    Ok(secret)
}

/// A fresh secret: [`SECRET_BYTES`] from the OS, base64url without padding.
pub fn new_secret() -> Result<String, TokenError> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(TokenError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The text `netlog token new` prints.
fn new_token(name: &str) -> Result<String, TokenError> {
    check_token_name(name).map_err(TokenError::Name)?;
    let secret = new_secret()?;
    let hash = digest_hex(&secret_digest(secret.as_bytes()));
    Ok(format!(
        "secret: {secret}\n\
         sha256: {hash}\n\
         \n\
         # Paste into the config; give the secret to the client only (it is not stored).\n\
         [[auth.tokens]]\n\
         name = \"{name}\"\n\
         sha256 = \"{hash}\"\n\
         produce = []\n\
         consume = []\n\
         admin = false\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One trailing newline (LF or CRLF) is dropped, nothing else.
    #[test]
    fn reading_drops_one_trailing_newline() {
        assert_eq!(read_secret(&b"test\n"[..]).unwrap(), b"test");
        assert_eq!(read_secret(&b"test\r\n"[..]).unwrap(), b"test");
        assert_eq!(read_secret(&b"test"[..]).unwrap(), b"test");
        assert!(matches!(
            read_secret(&b"test\n\n"[..]),
            Err(TokenError::Unprintable)
        ));
    }

    /// Empty, oversized and header-unfit secrets are refused.
    #[test]
    fn unfit_secrets_are_refused() {
        assert!(matches!(read_secret(&b""[..]), Err(TokenError::Empty)));
        assert!(matches!(read_secret(&b"\n"[..]), Err(TokenError::Empty)));
        assert!(matches!(
            read_secret(&b"a b"[..]),
            Err(TokenError::Unprintable)
        ));
        assert!(matches!(
            read_secret(&b"a\tb"[..]),
            Err(TokenError::Unprintable)
        ));
        let long = vec![b'a'; MAX_SECRET_BYTES + 1];
        assert!(matches!(read_secret(&long[..]), Err(TokenError::TooLong)));
        assert!(read_secret(&vec![b'a'; MAX_SECRET_BYTES][..]).is_ok());
    }

    /// Fresh secrets decode to 32 random bytes and differ from each other.
    #[test]
    fn new_secrets_are_long_and_distinct() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert_ne!(a, b);
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&a)
            .expect("base64url");
        assert_eq!(bytes.len(), SECRET_BYTES);
        assert!(read_secret(a.as_bytes()).is_ok(), "fit for a header");
    }

    /// A bad --name is refused rather than written into the snippet.
    #[test]
    fn bad_names_are_refused() {
        assert!(matches!(new_token("a\"b"), Err(TokenError::Name(_))));
        assert!(new_token("orders-service").is_ok());
    }
}
