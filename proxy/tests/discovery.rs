//! Issue 10: clients announce their labels and exporters with each poll, and `/clients` lists
//! them for Prometheus' http_sd as they are; a Go client's entry stays as the Go proxy lists it.

use std::time::Duration;

use pushprox_test_support::*;

/// `/clients` once it lists `n` groups (or after 10 s).
fn clients_json(proxy: &Proxy, n: usize) -> String {
    let mut last = String::new();
    wait_until(Duration::from_secs(10), || {
        last = proxy.get("/clients").text();
        serde_json::from_str::<serde_json::Value>(&last)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            == Some(n)
    });
    last
}

#[test]
fn clients_list_their_labels_and_exporters_and_a_go_client_stays_plain() {
    let proxy = Proxy::start(&[]);
    let _announcing = Client::start_with(
        &[proxy.port],
        "node-a.example",
        &[
            "--label",
            "env=prod",
            "--label",
            "site=Zürich",
            "--sd.target",
            "9100:job=node",
            "--sd.target",
            "9256:job=process,env=staging",
        ],
    );
    let _labelled = Client::start_with(&[proxy.port], "node-b.example", &["--label", "env=dev"]);
    // A Go client's poll: no extension header at all.
    let _go = RawPoll::send(proxy.port, "go.example");
    let json = clients_json(&proxy, 4);
    assert_eq!(
        json,
        concat!(
            r#"[{"targets":["go.example"],"labels":{}},"#,
            r#"{"targets":["node-a.example:9100"],"labels":{"env":"prod","job":"node","site":"Zürich"}},"#,
            r#"{"targets":["node-a.example:9256"],"labels":{"env":"staging","job":"process","site":"Zürich"}},"#,
            r#"{"targets":["node-b.example"],"labels":{"env":"dev"}}]"#,
            "\n"
        )
    );
    let page = proxy.get("/").text();
    assert!(
        page.contains("<code>node-a.example:9100</code> <code>node-a.example:9256</code>"),
        "{page}"
    );
    assert!(page.contains("<code>go.example:PORT</code>"), "{page}");
    assert!(page.contains("env=prod, site=Zürich"), "{page}");
}

#[test]
fn a_poll_with_a_reserved_label_name_is_refused_with_the_rule() {
    let proxy = Proxy::start(&[]);
    let body = "bad.example";
    let request = format!(
        "POST /poll HTTP/1.1\r\nHost: x\r\nX-PushProx-Labels: {{\"__name__\":\"x\"}}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let reply =
        exchange(proxy.port, request.as_bytes(), Duration::from_secs(5)).expect("an answer");
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply.text().contains("X-PushProx-Labels"),
        "{}",
        reply.text()
    );
    assert!(reply.text().contains("leading __"), "{}", reply.text());
    assert_eq!(proxy.get("/clients").text(), "[]\n");
}
