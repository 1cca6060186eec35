//! TLS for the streaming server: a configured PEM certificate and key, or a self-signed
//! certificate generated at start (for nodes where only the API server's proxy connects and
//! does not verify it).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::StreamingError;

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// Plain HTTP.
    None,
    /// A certificate generated at start for `localhost` and the listen address.
    SelfSigned,
    /// PEM files.
    Files {
        /// The certificate chain.
        cert: std::path::PathBuf,
        /// Its private key.
        key: std::path::PathBuf,
    },
}

/// The acceptor for `source` (`None` for plain HTTP); `host` goes into a generated
/// certificate's names.
pub fn acceptor(source: &TlsSource, host: &str) -> Result<Option<TlsAcceptor>, StreamingError> {
    let (chain, key) = match source {
        TlsSource::None => return Ok(None),
        TlsSource::SelfSigned => self_signed(host)?,
        TlsSource::Files { cert, key } => (read_chain(cert)?, read_key(key)?),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|err| StreamingError::Tls {
            path: match source {
                TlsSource::Files { cert, .. } => cert.clone(),
                _ => "<self-signed>".into(),
            },
            reason: err.to_string(),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

fn self_signed(
    host: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), StreamingError> {
    let names = vec!["localhost".to_owned(), host.to_owned()];
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|err| StreamingError::Tls {
            path: "<self-signed>".into(),
            reason: err.to_string(),
        })?;
    let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der()).map_err(|reason| {
        StreamingError::Tls {
            path: "<self-signed>".into(),
            reason: reason.to_owned(),
        }
    })?;
    Ok((vec![certified.cert.der().clone()], key))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, StreamingError> {
    let bad = |reason: String| StreamingError::Tls {
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|err| bad(err.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| bad(err.to_string()))?;
    if chain.is_empty() {
        return Err(bad("no certificate in the file".to_owned()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, StreamingError> {
    PrivateKeyDer::from_pem_file(path).map_err(|err| StreamingError::Tls {
        path: path.to_owned(),
        reason: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_makes_an_acceptor() {
        assert!(acceptor(&TlsSource::None, "127.0.0.1").unwrap().is_none());
        assert!(
            acceptor(&TlsSource::SelfSigned, "127.0.0.1")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn missing_files_name_the_file() {
        let Err(err) = acceptor(
            &TlsSource::Files {
                cert: "/nonexistent/cert.pem".into(),
                key: "/nonexistent/key.pem".into(),
            },
            "127.0.0.1",
        ) else {
            panic!("missing files accepted");
        };
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}
