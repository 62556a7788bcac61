//! TLS for the listener (rustls, with the *ring* provider), from the PEM
//! files named by `[server] tls_cert` and `tls_key`.
//!
//! The server configuration in force sits behind one pointer ([`ArcSwap`]):
//! each new connection takes the current one, so [`Tls::reload`] changes the
//! certificate for connections accepted afterwards while those already open
//! keep theirs. A reload is all or nothing: if either file is missing,
//! unreadable, not PEM, or the key does not fit the certificate, the old
//! configuration stays and the error says which file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// Largest PEM file read, in bytes: a chain of a few certificates is a few
/// KiB, so this only stops a wrong path (a log, a device) being read whole.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a regular file of at most 1 MiB.
    #[error("{}: not a regular file of at most {MAX_PEM_BYTES} bytes", path.display())]
    NotPemFile { path: PathBuf },
    /// The file holds no usable PEM section of the expected kind.
    #[error("{}: {source}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the pair (say, the key does not match).
    #[error("{}: {source}", cert.display())]
    Rustls {
        cert: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// The listener's TLS settings and the files they come from.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<ServerConfig>,
}

impl Tls {
    /// Reads `cert` (a PEM chain, leaf first) and `key` (a PEM private key).
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let config = server_config(cert, key)?;
        Ok(Tls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: ArcSwap::from_pointee(config),
        })
    }

    /// Re-reads both files, for a reload: nothing changes until
    /// [`Tls::install`], so a reload can refuse a bad file and keep the rest
    /// unchanged.
    pub(crate) fn read(&self) -> Result<ServerConfig, TlsError> {
        server_config(&self.cert, &self.key)
    }

    /// Puts a configuration [`Tls::read`] made in force for new connections.
    pub(crate) fn install(&self, config: ServerConfig) {
        self.current.store(Arc::new(config));
        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
    }

    /// Re-reads both files; on any error the configuration in force stays.
    #[cfg(test)]
    fn reload(&self) -> Result<(), TlsError> {
        self.install(self.read()?);
        Ok(())
    }

    /// An acceptor with the configuration in force.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    use crate::bounded::Unfit;
    crate::bounded::read_regular_file(path, MAX_PEM_BYTES).map_err(|e| match e {
        Unfit::Io(source) => TlsError::Read {
            path: path.to_path_buf(),
            source,
        },
        Unfit::NotAFile(_) | Unfit::TooLarge(_) => TlsError::NotPemFile {
            path: path.to_path_buf(),
        },
    })
}

fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    fn pem(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError + '_ {
        move |source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        }
    }
    let chain = CertificateDer::pem_slice_iter(&read_pem(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem(cert))?;
    if chain.is_empty() {
        return Err(pem(cert)(rustls::pki_types::pem::Error::NoItemsFound));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read_pem(key)?).map_err(pem(key))?;
    let rustls_err = |source| TlsError::Rustls {
        cert: cert.to_path_buf(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(rustls_err)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(rustls_err)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, names: &[&str]) {
        let made = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
    }

    /// A reload with a broken key keeps the configuration in force; one with
    /// good files swaps it.
    #[test]
    fn reload_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path(), &["localhost"]);
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let tls = Tls::load(&cert, &key).unwrap();
        let before = tls.current.load_full();
        std::fs::write(&key, "not a key").unwrap();
        let err = tls.reload().unwrap_err();
        assert!(err.to_string().contains("key.pem"), "{err}");
        assert!(Arc::ptr_eq(&before, &tls.current.load_full()));
        write_pair(dir.path(), &["127.0.0.1"]);
        tls.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &tls.current.load_full()));
    }

    /// Missing files and a certificate file without certificates are
    /// refused, naming the file.
    #[test]
    fn refuses_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        assert!(matches!(Tls::load(&cert, &key), Err(TlsError::Read { .. })));
        write_pair(dir.path(), &["localhost"]);
        std::fs::write(&cert, "").unwrap();
        let err = Tls::load(&cert, &key)
            .err()
            .expect("an empty chain is refused");
        assert!(err.to_string().contains("cert.pem"), "{err}");
        assert!(matches!(
            Tls::load(dir.path(), &key),
            Err(TlsError::NotPemFile { .. })
        ));
    }
}
