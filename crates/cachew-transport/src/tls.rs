//! Trust and client identity: which roots the client trusts and which
//! certificate it presents, the way Go's `crypto/x509` and `crypto/tls` do.
//!
//! The roots are, in this order of preference:
//! 1. the system store (`rustls-native-certs`: the macOS keychain, the
//!    Windows store, on Unix the bundle file and certificate directory
//!    that OpenSSL would use), where `SSL_CERT_FILE` replaces the system
//!    bundle file and `SSL_CERT_DIR` (a colon-separated list) replaces the
//!    system certificate directories, as in Go;
//! 2. the Mozilla roots bundled by `webpki-roots`, only when the system
//!    yields no root at all (a minimal container without `ca-certificates`);
//!
//! plus every CA file added with [`HttpClientBuilder::ca_certificate_file`](crate::HttpClientBuilder::ca_certificate_file).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;

/// The bundle files Go's `crypto/x509` tries on Linux and the BSDs, in
/// order; the first one that can be read is used.
const SYSTEM_CERT_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The certificate directories Go's `crypto/x509` reads on Linux.
const SYSTEM_CERT_DIRS: &[&str] = &["/etc/ssl/certs", "/etc/pki/tls/certs"];

/// Where the system roots come from: the platform store, or files and
/// directories named the way `SSL_CERT_FILE` and `SSL_CERT_DIR` name them.
///
/// [`SystemRoots::from_env`] is what a client uses unless told otherwise
/// ([`HttpClientBuilder::system_roots`](crate::HttpClientBuilder::system_roots)).
/// With neither override set, the platform store is used. With either set,
/// Go's rules apply: `cert_file` replaces the system bundle file (the first
/// readable of Go's list), `cert_dirs` replaces the system certificate
/// directories; the part not overridden keeps its system default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SystemRoots {
    /// A PEM bundle read instead of the system bundle file (`SSL_CERT_FILE`).
    pub cert_file: Option<PathBuf>,
    /// Directories of PEM files read instead of the system certificate
    /// directories (`SSL_CERT_DIR`, colon-separated).
    pub cert_dirs: Option<Vec<PathBuf>>,
}

impl SystemRoots {
    /// `SSL_CERT_FILE` and `SSL_CERT_DIR` from the process environment
    /// (empty values count as unset, as in Go).
    pub fn from_env() -> SystemRoots {
        SystemRoots::from_vars(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into()))
    }

    /// Like [`from_env`](SystemRoots::from_env), with the variables looked
    /// up through `var` (for tests and embedders that keep their own
    /// environment).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> SystemRoots {
        let non_empty = |name: &str| var(name).filter(|v| !v.is_empty());
        SystemRoots {
            cert_file: non_empty("SSL_CERT_FILE").map(PathBuf::from),
            cert_dirs: non_empty("SSL_CERT_DIR").map(|dirs| {
                dirs.split(':')
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect()
            }),
        }
    }

    /// Reads `file` instead of the system bundle file.
    #[must_use]
    pub fn with_cert_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.cert_file = Some(file.into());
        self
    }

    /// Reads `dirs` instead of the system certificate directories.
    #[must_use]
    pub fn with_cert_dirs(mut self, dirs: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        self.cert_dirs = Some(dirs.into_iter().map(Into::into).collect());
        self
    }

    /// The certificates these settings name; may be empty.
    fn load(&self) -> Vec<CertificateDer<'static>> {
        if self.cert_file.is_none() && self.cert_dirs.is_none() {
            let result = rustls_native_certs::load_native_certs();
            for err in &result.errors {
                tracing::debug!(error = %err, "reading the system trust store");
            }
            return result.certs;
        }
        let file = match &self.cert_file {
            Some(file) => Some(file.clone()),
            None => SYSTEM_CERT_FILES
                .iter()
                .map(PathBuf::from)
                .find(|f| f.is_file()),
        };
        let dirs: Vec<PathBuf> = match &self.cert_dirs {
            Some(dirs) => dirs.clone(),
            None => SYSTEM_CERT_DIRS
                .iter()
                .map(PathBuf::from)
                .filter(|d| d.is_dir())
                .collect(),
        };
        let mut certs = Vec::new();
        let mut add = |result: rustls_native_certs::CertificateResult| {
            for err in &result.errors {
                tracing::debug!(error = %err, "reading trusted certificates");
            }
            certs.extend(result.certs);
        };
        if let Some(file) = &file {
            add(rustls_native_certs::load_certs_from_paths(Some(file), None));
        }
        for dir in &dirs {
            add(rustls_native_certs::load_certs_from_paths(None, Some(dir)));
        }
        // A directory usually holds the bundle's certificates again.
        certs.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
        certs.dedup();
        certs
    }
}

/// A client certificate chain and its private key, read from PEM files.
#[derive(Clone)]
pub(crate) struct ClientIdentity {
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The paths are not secret; the key's contents never get here.
        f.debug_struct("ClientIdentity")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

/// What the builder knows about TLS, turned into a rustls configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsSettings {
    pub(crate) system: Option<SystemRoots>,
    pub(crate) ca_files: Vec<PathBuf>,
    pub(crate) identity: Option<ClientIdentity>,
}

fn config_error(reason: String) -> Error {
    Error::Config { reason }
}

/// Every certificate in a PEM file; an unreadable file or one without a
/// certificate is an error naming the file.
fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| config_error(format!("cannot read {what} {}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| config_error(format!("cannot parse {what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(config_error(format!(
            "{what} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

impl TlsSettings {
    /// The rustls configuration: roots as described in the module docs, the
    /// client identity if one is set.
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, Error> {
        let system = self.system.clone().unwrap_or_else(SystemRoots::from_env);
        let mut roots = rustls::RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(system.load());
        if ignored > 0 {
            tracing::debug!(ignored, "system certificates rustls cannot use");
        }
        if added == 0 {
            tracing::debug!("no system roots found; using the bundled Mozilla roots");
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for path in &self.ca_files {
            for cert in read_certs(path, "CA certificate file")? {
                roots.add(cert).map_err(|e| {
                    config_error(format!(
                        "unusable CA certificate in {}: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|_| config_error("the TLS provider supports no safe protocol version".into()))?
            .with_root_certificates(roots);
        match &self.identity {
            None => Ok(builder.with_no_client_auth()),
            Some(id) => {
                let chain = read_certs(&id.cert_file, "client certificate file")?;
                let key = PrivateKeyDer::from_pem_file(&id.key_file).map_err(|e| {
                    // The error names the file and what went wrong, never
                    // the key material.
                    config_error(format!(
                        "cannot read the client key {}: {e}",
                        id.key_file.display()
                    ))
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    config_error(format!(
                        "the client certificate {} and key {} do not fit: {e}",
                        id.cert_file.display(),
                        id.key_file.display()
                    ))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_follow_go() {
        let vars = |file: Option<&str>, dir: Option<&str>| {
            let (file, dir) = (file.map(String::from), dir.map(String::from));
            SystemRoots::from_vars(move |name| match name {
                "SSL_CERT_FILE" => file.clone(),
                "SSL_CERT_DIR" => dir.clone(),
                _ => None,
            })
        };
        assert_eq!(vars(None, None), SystemRoots::default());
        assert_eq!(vars(Some(""), Some("")), SystemRoots::default());
        let roots = vars(Some("/x/ca.pem"), Some("/a:/b::/c"));
        assert_eq!(roots.cert_file, Some(PathBuf::from("/x/ca.pem")));
        assert_eq!(
            roots.cert_dirs,
            Some(vec!["/a".into(), "/b".into(), "/c".into()])
        );
    }

    #[test]
    fn missing_files_are_errors_naming_the_file() {
        let settings = TlsSettings {
            system: Some(SystemRoots::default().with_cert_dirs(Vec::<PathBuf>::new())),
            ca_files: vec!["/nonexistent/ca.pem".into()],
            identity: None,
        };
        let err = settings.client_config().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
