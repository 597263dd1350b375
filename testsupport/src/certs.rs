//! A throwaway certificate authority and server certificate for TLS tests (Redis and
//! Postgres), made with the `openssl` command.

use std::path::PathBuf;
use std::process::Command;

/// A throwaway certificate authority and a server certificate it signed, valid for
/// `127.0.0.1` and `localhost` for two days, made with the `openssl` command in a temporary
/// directory that is removed when this is dropped. The keys are ECDSA P-256 (fast to make).
pub struct TestCerts {
    /// The directory holding `ca.crt`, `server.crt` and `server.key`.
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl TestCerts {
    /// Makes the CA (`ca.crt`) and the server's certificate (`server.crt`, `server.key`).
    pub fn generate(tag: &str) -> TestCerts {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("kosh-test-certs-{tag}-"))
            .tempdir()
            .expect("a temporary directory for certificates");
        let certs = TestCerts {
            dir: tmp.path().to_path_buf(),
            _tmp: tmp,
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        certs.openssl(
            &[
                &["req", "-x509", "-nodes"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=kosh-jobs test CA {tag}"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        certs.openssl(
            &[
                &["req", "-nodes"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            certs.dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write server.ext");
        certs.openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        certs
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("openssl not found: install it with `apt-get install openssl`");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The CA's certificate (PEM): what a client must trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The CA's certificate as bytes.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.ca()).expect("read ca.crt")
    }

    /// `redis-server` arguments for a TLS port with the server certificate.
    pub fn server_args(&self) -> Vec<String> {
        let p = |f: &str| self.dir.join(f).display().to_string();
        vec![
            "--tls-cert-file".into(),
            p("server.crt"),
            "--tls-key-file".into(),
            p("server.key"),
            "--tls-ca-cert-file".into(),
            p("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    }
}
