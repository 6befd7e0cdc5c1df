//! `--web.config.file`: the Prometheus exporter-toolkit web configuration (TLS, client
//! certificates, basic-auth users, response headers), as node_exporter reads it.

pub mod tls;

#[cfg(test)]
mod testcerts;
