//! Request targets as log lines and error texts may show them: never the userinfo
//! (`user:password@`) of an absolute URL, and never more than 100 characters.

/// A request target fit for a log line: at most 100 characters, any userinfo cut out.
pub fn shown(target: &str) -> String {
    let cut = pushprox_protocol::without_userinfo(target).unwrap_or_else(|| target.to_string());
    cut.chars().take(100).flat_map(char::escape_debug).collect()
}
