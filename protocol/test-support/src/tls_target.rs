//! A target that serves over TLS and requires a client certificate (rustls, on the ring
//! provider the binaries link), for the client's `?_scheme=https` scrapes.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};

use crate::http::WAIT;
use crate::target::read_head;

/// Answers every request on `127.0.0.1:port` with `200` and a fixed body, over TLS with the
/// certificate `cert` and key `key`, to clients whose certificate `client_ca` signed.
pub struct TlsTarget {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl TlsTarget {
    pub fn start(cert: &Path, key: &Path, client_ca: &Path, body: &str) -> TlsTarget {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in certs(client_ca) {
            roots
                .add(ca)
                .unwrap_or_else(|e| panic!("{}: {e}", client_ca.display()));
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap_or_else(|e| panic!("a client verifier: {e}"));
        let key =
            PrivateKeyDer::from_pem_file(key).unwrap_or_else(|e| panic!("{}: {e}", key.display()));
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_client_cert_verifier(verifier)
                    .with_single_cert(certs(cert), key)
            })
            .unwrap_or_else(|e| panic!("a TLS server config: {e}"));
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("the TLS target's address")
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let answer = Arc::new(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        ));
        let stopped = Arc::clone(&stop);
        thread::Builder::new()
            .name("tls-target".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (config, answer) = (Arc::clone(&config), Arc::clone(&answer));
                    let _ = thread::Builder::new()
                        .name("tls-target-conn".into())
                        .stack_size(256 * 1024)
                        .spawn(move || serve(conn, config, &answer));
                }
            })
            .expect("cannot start the TLS target's thread");
        TlsTarget { port, stop }
    }
}

impl Drop for TlsTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, config: Arc<ServerConfig>, answer: &str) {
    let _ = conn.set_read_timeout(Some(WAIT));
    let _ = conn.set_write_timeout(Some(WAIT));
    let Ok(tls) = ServerConnection::new(config) else {
        return;
    };
    let mut stream = StreamOwned::new(tls, conn);
    if read_head(&mut stream).is_some() {
        let _ = stream.write_all(answer.as_bytes());
        let _ = stream.flush();
        stream.conn.send_close_notify();
        let _ = stream.flush();
    }
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
