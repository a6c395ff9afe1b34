//! The PHI guard: notes go only to hosts the pipeline lists in `allowed_endpoints`.
//!
//! Loopback (`localhost`, `127.0.0.0/8`, `::1`) is always allowed: a model served on the same
//! machine sees nothing that leaves it. Any other host must be listed, so that sending clinical
//! notes to a cloud endpoint is a decision written in the pipeline file, reviewed with it, and
//! never the result of a default or a typo. An entry is
//!
//! - `host` (any port, HTTPS only), e.g. `myresource.openai.azure.com`;
//! - `host:port` (that port, HTTPS only);
//! - `*.domain` (any host below `domain`, HTTPS only), e.g. `*.openai.azure.com`;
//! - a URL `https://host[:port]` or `http://host[:port]`; plain HTTP to a non-loopback host is
//!   allowed only through an `http://` entry.

use std::net::IpAddr;

use crate::LlmError;

/// One parsed `allowed_endpoints` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// Lower-case host; for wildcards, the suffix after `*.`.
    host: String,
    wildcard: bool,
    port: Option<u16>,
    allow_http: bool,
}

/// The hosts a stage may send notes to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedEndpoints {
    entries: Vec<Entry>,
}

/// Why an `allowed_endpoints` entry is malformed (the engine reports it at its line).
pub fn check_entry(s: &str) -> Result<(), String> {
    parse_entry(s).map(|_| ())
}

fn parse_entry(s: &str) -> Result<Entry, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("an endpoint is empty".into());
    }
    let (rest, allow_http) = if let Some(r) = t.strip_prefix("http://") {
        (r, true)
    } else if let Some(r) = t.strip_prefix("https://") {
        (r, false)
    } else if t.contains("://") {
        return Err(format!("`{t}`: only http:// and https:// endpoints exist"));
    } else {
        (t, false)
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.contains('?') || rest.contains('@') || rest.contains(char::is_whitespace) {
        return Err(format!(
            "`{t}`: write a host (`example.org`, `example.org:8443`, `*.example.org`), not a path"
        ));
    }
    let (host, port) = split_host_port(rest).ok_or_else(|| format!("`{t}`: the port is not a number"))?;
    let (host, wildcard) = match host.strip_prefix("*.") {
        Some(h) => (h, true),
        None => (host, false),
    };
    if host.is_empty() || host.contains('*') {
        return Err(format!("`{t}`: a wildcard is written `*.domain`"));
    }
    Ok(Entry { host: host.to_ascii_lowercase(), wildcard, port, allow_http })
}

/// `host:port`, `[v6]:port`, `host`, `[v6]`, `v6`.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(r) = s.strip_prefix('[') {
        let (h, after) = r.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((h, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((h, None)),
            None => None,
        };
    }
    if s.matches(':').count() > 1 {
        return Some((s, None)); // a bare IPv6 address
    }
    match s.split_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((s, None)),
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether a request to `url` may go through the system's proxy (`https_proxy`, `all_proxy`, …):
/// only HTTPS to a host that is not loopback, where a proxy tunnels TLS and sees the host but not
/// the note. Plain HTTP through a proxy hands the proxy the whole request (note text, API key),
/// and loopback through one sends it off the machine: both go direct.
pub fn may_use_proxy(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| u.scheme() == "https" && !is_loopback(u.host_str().unwrap_or("")))
}

impl AllowedEndpoints {
    /// Loopback only.
    pub fn loopback_only() -> Self {
        AllowedEndpoints::default()
    }

    /// Parses the pipeline's `allowed_endpoints` (already validated by the engine).
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Self, LlmError> {
        let entries = list
            .iter()
            .map(|s| parse_entry(s.as_ref()).map_err(|m| LlmError::Config(format!("allowed_endpoints: {m}"))))
            .collect::<Result<_, _>>()?;
        Ok(AllowedEndpoints { entries })
    }

    /// Ok when notes may be sent to `url`; otherwise an error that says how to allow it.
    pub fn check(&self, url: &str) -> Result<(), LlmError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| LlmError::Config(format!("the provider's URL `{url}` is not a URL: {e}")))?;
        let scheme = parsed.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(LlmError::Config(format!("the provider's URL `{url}` is not http(s)")));
        }
        let host = parsed.host_str().unwrap_or("").to_ascii_lowercase();
        let port = parsed.port_or_known_default();
        if is_loopback(&host) {
            return Ok(());
        }
        let host_bare = host.trim_start_matches('[').trim_end_matches(']');
        let ok = self.entries.iter().any(|e| {
            let host_ok = if e.wildcard {
                host_bare.ends_with(&format!(".{}", e.host))
            } else {
                host_bare == e.host.trim_start_matches('[').trim_end_matches(']')
            };
            host_ok && e.port.is_none_or(|p| Some(p) == port) && (scheme == "https" || e.allow_http)
        });
        if ok {
            return Ok(());
        }
        let listed = self.entries.iter().any(|e| {
            !e.wildcard && host_bare == e.host || e.wildcard && host_bare.ends_with(&format!(".{}", e.host))
        });
        let now = if self.entries.is_empty() {
            "it is not set, so only loopback is allowed".to_string()
        } else {
            format!("it lists {} endpoint(s), and this is not one of them", self.entries.len())
        };
        let hint = if listed && scheme == "http" {
            format!(
                "the host is listed for HTTPS only; to send notes over plain HTTP, list `http://{}` instead",
                parsed.host_str().unwrap_or("")
            )
        } else {
            let entry = match parsed.port() {
                Some(p) => format!("{}:{p}", parsed.host_str().unwrap_or("")),
                None => parsed.host_str().unwrap_or("").to_string(),
            };
            let entry = if scheme == "http" { format!("http://{entry}") } else { entry };
            format!(
                "if this endpoint may receive clinical notes (your data use agreement covers it), add \
                 `allowed_endpoints: [\"{entry}\"]` at the top level of the pipeline file"
            )
        };
        Err(LlmError::NotAllowed(format!(
            "refusing to send notes to {scheme}://{host}: the pipeline's `allowed_endpoints` does not allow it ({now}); {hint}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_always_allowed_and_nothing_else_by_default() {
        let a = AllowedEndpoints::loopback_only();
        for u in ["http://127.0.0.1:8000/v1/chat/completions", "http://localhost/x", "http://[::1]:9/x"] {
            a.check(u).unwrap();
        }
        let e = a.check("https://res.openai.azure.com/openai/deployments/d/chat/completions").unwrap_err();
        let m = e.to_string();
        assert!(m.contains("res.openai.azure.com") && m.contains("allowed_endpoints"), "{m}");
        assert!(m.contains("only loopback"), "{m}");
    }

    #[test]
    fn entries_match_hosts_ports_wildcards_and_schemes() {
        let a = AllowedEndpoints::parse(&[
            "res.openai.azure.com",
            "*.example.org",
            "gpu:8443",
            "http://lan-box:8000",
        ])
        .unwrap();
        a.check("https://res.openai.azure.com/x").unwrap();
        a.check("https://RES.openai.azure.com:443/x").unwrap();
        assert!(a.check("http://res.openai.azure.com/x").unwrap_err().to_string().contains("http://"));
        a.check("https://a.b.example.org/x").unwrap();
        assert!(a.check("https://example.org.evil.com/x").is_err());
        assert!(a.check("https://notexample.org/x").is_err());
        a.check("https://gpu:8443/x").unwrap();
        assert!(a.check("https://gpu:8444/x").is_err());
        a.check("http://lan-box:8000/v1/chat/completions").unwrap();
        assert!(a.check("http://lan-box:8001/v1").is_err());
    }

    #[test]
    fn only_https_to_a_remote_host_may_go_through_a_proxy() {
        assert!(may_use_proxy("https://res.openai.azure.com/openai/deployments/d/chat/completions"));
        for url in [
            "http://10.0.0.5:8000/v1/chat/completions",
            "http://127.0.0.1:8000/v1/chat/completions",
            "https://localhost:8443/v1/chat/completions",
            "https://[::1]:8443/v1",
            "not a url",
        ] {
            assert!(!may_use_proxy(url), "{url}");
        }
    }

    #[test]
    fn malformed_entries() {
        for bad in ["", "https://x/path", "ftp://x", "x:port", "*", "a*.b"] {
            assert!(check_entry(bad).is_err(), "{bad}");
        }
        for good in ["x", "x:1", "*.x.org", "https://x/", "http://[::1]:8000", "10.0.0.5"] {
            check_entry(good).unwrap();
        }
    }
}
