//! Unit tests of the config file's two stages: the shipped example loads, and each wrong value is refused
//! with the file, the key and the reason.

use super::*;
use crate::retry::Backoff;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("test.toml"))
}

#[test]
fn the_shipped_example_config_loads() {
    let config = Config::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/hookd.toml"
    )))
    .expect("config/hookd.toml is valid");
    assert!(!config.endpoints.is_empty());
}

#[test]
fn the_example_configs_provider_examples_load_when_uncommented() {
    let text = include_str!("../../config/hookd.toml");
    let (head, examples) = text
        .split_once("# Examples for the provider formats")
        .expect("the example config has provider examples");
    let mut uncommented = head.to_owned();
    for line in examples.lines() {
        let Some(rest) = line.strip_prefix("# ") else {
            continue;
        };
        let key = rest.split(" = ").next().unwrap_or_default();
        let is_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        if rest == "[[endpoints]]" || (is_key && rest.contains(" = ")) {
            uncommented.push_str(rest);
            uncommented.push('\n');
        }
    }
    let config = load(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    let names: Vec<&str> = config.endpoints.iter().map(|e| e.name.as_str()).collect();
    for name in ["sdk-notify", "sms-status", "dlr", "gateway", "inbox"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let dlr = config.endpoint("dlr").unwrap();
    assert!(
        dlr.verification.is_some(),
        "the example verifies its webhook"
    );
    let gateway = config.endpoint("gateway").unwrap();
    assert_ne!(
        gateway.url_for("device_status"),
        gateway.url_for("incoming_sms"),
        "the seed's two webhooks, two URLs"
    );
}

#[test]
fn errors_name_file_key_and_reason() {
    let err =
        load("[[endpoints]]\nname = \"a\"\nurl = \"http://x\"\nmax_age = \"soon\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("test.toml"), "{text}");
    assert!(text.contains("endpoints[0].max_age"), "{text}");
    assert!(text.contains("soon"), "{text}");
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let err = load("data_dr = \"x\"\n").unwrap_err().to_string();
    assert!(err.contains("data_dr"), "{err}");
}

#[test]
fn duplicate_endpoint_names_are_refused() {
    let text = "[[endpoints]]\nname = \"a\"\nurl = \"http://x\"\n[[endpoints]]\nname = \"a\"\nurl = \"http://y\"\n";
    let err = load(text).unwrap_err().to_string();
    assert!(
        err.contains("endpoints[1].name") && err.contains("twice"),
        "{err}"
    );
}

#[test]
fn fast_exponential_retry_is_accepted() {
    let text = "[[endpoints]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\nmax_attempts = 3\n\
                retry = { initial_ms = 50, max_ms = 200, multiplier = 2.0, jitter = 0.0 }\n";
    let config = load(text).unwrap();
    let retry = &config.endpoints[0].retry;
    assert_eq!(retry.max_attempts, 3);
    assert!(matches!(retry.backoff, Backoff::Exponential { jitter, .. } if jitter == 0.0));
}

#[test]
fn bad_cidr_and_bad_format_are_named() {
    let err = load("[destinations]\nallow = [\"127.0.0.0/33\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("destinations.allow[0]"), "{err}");
    let err = load("[[endpoints]]\nname = \"a\"\nurl = \"http://x\"\nformat = \"yaml\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("endpoints[0].format") && err.contains("yaml"),
        "{err}"
    );
}

#[test]
fn a_dlr_json_endpoint_must_say_how_it_is_verified() {
    let endpoint = |extra: &str| {
        format!(
            "[[endpoints]]\nname = \"a\"\nurl = \"http://x\"\n[[endpoints]]\nname = \"dlr\"\n\
             url = \"http://x/cb\"\nformat = \"dlr-json\"\n{extra}\n"
        )
    };
    let err = load(&endpoint("")).unwrap_err().to_string();
    assert!(
        err.contains("endpoints[1].verification") && err.contains("`dlr`"),
        "names the key and the endpoint: {err}"
    );
    assert!(err.contains("\"none\""), "says how to opt out: {err}");
    let config = load(&endpoint("verification = \"none\"")).unwrap();
    let dlr = config.endpoint("dlr").unwrap();
    assert!(dlr.verification.is_none() && dlr.verification_waived);
    let config = load(&endpoint("verification = { validation_key = \"k\" }")).unwrap();
    let dlr = config.endpoint("dlr").unwrap();
    assert_eq!(
        dlr.verification.as_ref().map(|v| v.validation_key.expose()),
        Some("k")
    );
    assert!(!dlr.verification_waived);
    for bad in [
        "verification = \"None\"",
        "verification = \"\"",
        "verification = true",
        "verification = { key = \"k\" }",
    ] {
        let err = load(&endpoint(bad)).unwrap_err().to_string();
        assert!(err.contains("endpoints[1].verification"), "{bad}: {err}");
    }
    let err = load(&endpoint("verification = { validation_key = \"\" }"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("endpoints[1].verification.validation_key"),
        "{err}"
    );
}

#[test]
fn verification_is_refused_on_a_format_without_the_handshake() {
    for value in ["\"none\"", "{ validation_key = \"k\" }"] {
        let text = format!(
            "[[endpoints]]\nname = \"gw\"\nurl = \"http://x\"\nformat = \"gateway-json\"\nverification = {value}\n"
        );
        let err = load(&text).unwrap_err().to_string();
        assert!(
            err.contains("endpoints[0].verification") && err.contains("no verification handshake"),
            "{err}"
        );
    }
}

#[test]
fn a_gateway_endpoint_takes_a_url_per_message_type() {
    let gateway = |urls: &str| {
        load(&format!(
            "[[endpoints]]\nname = \"gw\"\nurl = \"https://gw.example/all\"\nformat = \"gateway-json\"\nurls = {urls}\n"
        ))
    };
    let config = gateway(
        "{ device_status = \"https://gw.example/status\", incoming_sms = \"http://gw.example/in?k=1\" }",
    )
    .unwrap();
    let gw = config.endpoint("gw").unwrap();
    assert_eq!(
        gw.url_for("device_status").as_str(),
        "https://gw.example/status"
    );
    assert_eq!(
        gw.url_for("incoming_sms").as_str(),
        "http://gw.example/in?k=1"
    );
    assert!(
        !format!("{gw:?}").contains("k=1"),
        "urls are masked in Debug"
    );
    let config = gateway("{ incoming_sms = \"https://gw.example/in\" }").unwrap();
    let gw = config.endpoint("gw").unwrap();
    assert_eq!(
        gw.url_for("device_status").as_str(),
        "https://gw.example/all",
        "a type without its own URL goes to `url`"
    );
    for (urls, key) in [
        (
            "{ incoming_sms = \"ftp://gw.example/in\" }",
            "endpoints[0].urls.incoming_sms",
        ),
        (
            "{ incoming_sms = \"not a url\" }",
            "endpoints[0].urls.incoming_sms",
        ),
        (
            "{ device_status = \"mailto:a@gw.example\" }",
            "endpoints[0].urls.device_status",
        ),
        (
            "{ sms = \"https://gw.example/x\" }",
            "endpoints[0].urls.sms",
        ),
        ("\"https://gw.example/x\"", "endpoints[0].urls"),
    ] {
        let err = gateway(urls).unwrap_err().to_string();
        assert!(err.contains(&format!("key `{key}`")), "{urls}: {err}");
    }
    let err = load(
        "[[endpoints]]\nname = \"n\"\nurl = \"http://x\"\nformat = \"notification\"\n\
         urls = { sms = \"http://x/sms\" }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("key `endpoints[0].urls`") && err.contains("gateway-json"),
        "{err}"
    );
}

#[test]
fn secrets_do_not_show_in_debug() {
    let text = "[[endpoints]]\nname = \"a\"\nurl = \"http://x\"\nauth = { type = \"bearer\", token = \"s3cr3t\" }\n";
    let config = load(text).unwrap();
    assert!(!format!("{config:?}").contains("s3cr3t"));
}
