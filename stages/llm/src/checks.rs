//! What an LLM stage's params can be checked for before anything runs: the PHI guard's verdict
//! on the provider's host (the policy is the pipeline's `allowed_endpoints`, so a refused host
//! is a pipeline error at its line rather than a failure after the upstream stages ran) and the
//! ranges of `limits`. Both `instructions` and `judge` call these from their `Stage::validate`.

use camel_engine::Problem;
use camel_engine::validate::in_range;

use crate::client::Limits;
use crate::guard::AllowedEndpoints;
use crate::provider::Provider;

/// The problem with sending notes to `provider` under `allowed_endpoints`, if any; `param` is
/// where the provider is written (`provider`).
pub fn provider_problem(param: &str, provider: &Provider, allowed_endpoints: &[String]) -> Option<Problem> {
    let at = match provider {
        Provider::Openai(_) => format!("{param}.base_url"),
        Provider::Azure(_) => format!("{param}.endpoint"),
    };
    // A malformed `allowed_endpoints` entry is the engine's own error, reported at its line.
    let allowed = AllowedEndpoints::parse(allowed_endpoints).ok()?;
    let e = allowed.check(&provider.url()).err()?.to_string();
    Some(match e.split_once("; ") {
        Some((why, hint)) => Problem::param(&at, why).help(hint),
        None => Problem::param(&at, e),
    })
}

/// Every `limits:` value out of its range.
pub fn limits_problems(param: &str, l: &Limits) -> Vec<Problem> {
    let p = |f: &str| format!("{param}.{f}");
    let per_minute = "leave it out for no limit";
    let seconds = |v: f64| if v.is_finite() { v } else { -1.0 };
    [
        in_range(&p("concurrency"), l.concurrency, 1, None, "requests in flight at once"),
        l.requests_per_minute.and_then(|v| in_range(&p("requests_per_minute"), v, 1, None, per_minute)),
        l.tokens_per_minute.and_then(|v| in_range(&p("tokens_per_minute"), v, 1, None, per_minute)),
        (!(l.timeout_s > 0.0 && l.timeout_s.is_finite())).then(|| {
            Problem::param(
                &p("timeout_s"),
                format!("`{}` is {}; it must be a positive number of seconds", p("timeout_s"), l.timeout_s),
            )
        }),
        in_range(&p("backoff_initial_s"), seconds(l.backoff_initial_s), 0.0, None, "seconds"),
        (l.backoff_max_s < l.backoff_initial_s).then(|| {
            Problem::param(
                &p("backoff_max_s"),
                format!(
                    "`{}` is {}, below `backoff_initial_s` ({}); it must be at least that",
                    p("backoff_max_s"),
                    l.backoff_max_s,
                    l.backoff_initial_s
                ),
            )
        }),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{AzureConfig, OpenAiConfig};

    fn azure(endpoint: &str) -> Provider {
        Provider::Azure(
            serde_json::from_value::<AzureConfig>(
                serde_json::json!({"endpoint": endpoint, "deployment": "d"}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn a_host_the_guard_refuses_is_a_problem_at_the_endpoint() {
        let p = provider_problem("provider", &azure("https://res.openai.azure.com"), &[]).unwrap();
        assert_eq!(p.at, ["params", "provider", "endpoint"]);
        assert!(
            p.message.contains("refusing to send notes to https://res.openai.azure.com"),
            "{}",
            p.message
        );
        assert!(p.help.unwrap().contains("allowed_endpoints: [\"res.openai.azure.com\"]"));
        let allowed = vec!["*.openai.azure.com".to_string()];
        assert!(provider_problem("provider", &azure("https://res.openai.azure.com"), &allowed).is_none());
        let local = Provider::Openai(
            serde_json::from_value::<OpenAiConfig>(
                serde_json::json!({"base_url": "http://127.0.0.1:8000/v1", "model": "m"}),
            )
            .unwrap(),
        );
        assert!(provider_problem("provider", &local, &[]).is_none(), "loopback is always allowed");
    }

    #[test]
    fn limits_out_of_range_are_each_named() {
        assert!(limits_problems("limits", &Limits::default()).is_empty());
        let l = Limits {
            concurrency: 0,
            requests_per_minute: Some(0),
            backoff_initial_s: 5.0,
            backoff_max_s: 1.0,
            ..Limits::default()
        };
        let at: Vec<String> = limits_problems("limits", &l).into_iter().map(|p| p.at.join(".")).collect();
        assert_eq!(
            at,
            ["params.limits.concurrency", "params.limits.requests_per_minute", "params.limits.backoff_max_s"]
        );
    }
}
