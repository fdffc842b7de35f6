//! Property tests: every parser that takes user input, fed arbitrary text, returns a value or
//! an error that names the input; none panics.

use proptest::prelude::*;

use crate::schedule::{parse_at, parse_cron, parse_duration, parse_tz};
use crate::service::NewAction;
use crate::tool::validate_name;
use crate::webhook::{Delivery, check_template, normalize_path, render_input};

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        // Arbitrary Unicode, including control characters.
        ".{0,80}",
        // Text near the grammar of each parser, to reach its deeper branches.
        "(now|\\+|now\\+)?[0-9.]{0,12}(ms|s|m|h|d|x)?",
        "[{}\\[\\]\"a-z.: ,0-9-]{0,60}",
        "[*/0-9 ,A-Z-]{0,40}",
        "(/|\\.\\.|%2[fF]|[a-z])*",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn durations(text in any_text()) {
        if let Err(err) = parse_duration(&text) {
            prop_assert!(err.contains("duration"), "{}", err);
        }
    }

    #[test]
    fn times(text in any_text()) {
        if let Err(err) = parse_at(&text, chrono::Utc::now()) {
            prop_assert!(err.contains("time") || err.contains("duration"), "{}", err);
        }
    }

    #[test]
    fn tool_names(text in any_text()) {
        if validate_name(&text).is_ok() {
            prop_assert!(!text.contains('/') && !text.contains('.') && !text.is_empty());
        }
    }

    #[test]
    fn webhook_paths(text in any_text()) {
        if let Ok(path) = normalize_path(&text) {
            prop_assert!(!path.split('/').any(|s| s == ".." || s == "." || s.is_empty()));
            prop_assert!(!path.contains('%'));
        }
    }

    #[test]
    fn cron_and_zones(text in any_text()) {
        if let Err(err) = parse_cron(&text) {
            prop_assert!(err.contains("cron expression"), "{}", err);
        }
        if let Err(err) = parse_tz(&text) {
            prop_assert!(err.contains("time zone"), "{}", err);
        }
    }

    #[test]
    fn templates_and_bodies(template in any_text(), body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let checked = check_template(&template);
        let delivery = Delivery {
            id: uuid::Uuid::now_v7(),
            route_id: uuid::Uuid::now_v7(),
            route_path: "p".into(),
            tool_name: "t".into(),
            input_template: template.clone(),
            headers: Default::default(),
            delivery_id: None,
            received_at: chrono::Utc::now(),
            body,
        };
        let rendered = render_input(&delivery);
        // A template that passed the check fails to render only because of this body.
        if checked.is_ok() && let Err(err) = rendered {
            prop_assert!(err.contains("body") || err.contains("rendered invalid JSON"), "{}", err);
        }
    }

    #[test]
    fn api_bodies(text in any_text()) {
        // Deserializing is all the API does before the checks above; it must not panic.
        let _ = serde_json::from_str::<NewAction>(&text);
        let _ = serde_json::from_str::<crate::webhook::NewRoute>(&text);
    }
}
