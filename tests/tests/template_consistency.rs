//! The template and the code agree: every binary in functions/ is deployed, each `main.rs`
//! builds the handler the local stack builds for it, and the local stack serves exactly the
//! template's routes.

use std::collections::BTreeSet;

use mailconfirm_local::harness::TestStack;
use mailconfirm_local::stack::{Constructor, FUNCTIONS};
use mailconfirm_local::template::{Template, project_root};

fn function_crates() -> BTreeSet<String> {
    std::fs::read_dir(project_root().join("functions"))
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect()
}

#[test]
fn every_binary_in_functions_has_a_function_resource_and_vice_versa() {
    let template = Template::load().unwrap();
    let deployed: BTreeSet<String> = template.functions().into_iter().map(|f| f.binary).collect();
    assert_eq!(function_crates(), deployed);
}

#[test]
fn the_local_stack_builds_each_function_as_its_main_does() {
    let listed: BTreeSet<String> = FUNCTIONS.iter().map(|f| f.binary.to_owned()).collect();
    assert_eq!(function_crates(), listed, "functions/ and the local stack's table");
    for function in FUNCTIONS {
        let main = std::fs::read_to_string(project_root().join("functions").join(function.binary).join("src/main.rs"))
            .unwrap();
        // `stringify!` spaces the path's separators.
        let handler = function.handler.replace(' ', "");
        let name = handler.rsplit("::").next().unwrap();
        let run = match function.constructor {
            Constructor::Http(_) => "run_http",
            Constructor::Sqs(_) => "run_sqs",
            Constructor::Stream(_) => "run_stream",
            Constructor::Sns(_) => "run_sns",
        };
        assert!(main.contains(&format!("use {handler};")), "{}: imports {handler}", function.binary);
        assert!(
            main.contains(&format!("mailconfirm::{run}({name}::from_config)")),
            "{}: {run}({name})",
            function.binary
        );
    }
}

#[test]
fn function_resources_are_named_after_their_binaries() {
    for function in Template::load().unwrap().functions() {
        let expected: String = function
            .binary
            .split('-')
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
            })
            .collect::<String>()
            + "Function";
        assert_eq!(function.logical_id, expected);
        assert_eq!(function.properties["CodeUri"], "..", "{}", function.logical_id);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_api_serves_every_route_of_the_template_and_no_other() {
    let stack = TestStack::start().await;
    let template_routes: BTreeSet<_> =
        Template::load().unwrap().http_routes().into_iter().map(|r| (r.method, r.path, r.binary)).collect();
    let served: BTreeSet<_> =
        stack.api.gateway.route_specs().map(|r| (r.method.clone(), r.path.clone(), r.binary.clone())).collect();
    assert_eq!(template_routes, served);
    assert!(!served.is_empty());
}

#[test]
fn every_function_raises_an_alarm_on_errors_and_on_throttles() {
    let template = Template::load().unwrap();
    let alarmed: BTreeSet<(String, String)> = template
        .resources()
        .values()
        .filter(|resource| resource["Type"] == "AWS::CloudWatch::Alarm")
        .filter(|alarm| alarm["Properties"]["Namespace"] == "AWS/Lambda")
        .filter_map(|alarm| {
            let function = alarm["Properties"]["Dimensions"][0]["Value"]["!Ref"].as_str()?;
            Some((function.to_owned(), alarm["Properties"]["MetricName"].as_str()?.to_owned()))
        })
        .collect();
    for function in template.functions() {
        for metric in ["Errors", "Throttles"] {
            assert!(
                alarmed.contains(&(function.logical_id.clone(), metric.to_owned())),
                "{} {metric}",
                function.logical_id
            );
        }
    }
}

#[test]
fn the_aws_calls_budget_is_the_functions_timeout() {
    let template = Template::load().unwrap();
    let globals = &template.document()["Globals"]["Function"];
    let timeout = globals["Timeout"].as_u64().unwrap();
    let budget = globals["Environment"]["Variables"]["FUNCTION_TIMEOUT_SECONDS"].as_str().unwrap();
    assert_eq!(budget.parse::<u64>().unwrap(), timeout);
    for function in template.functions() {
        assert!(function.properties.get("Timeout").is_none(), "{} overrides Timeout", function.logical_id);
    }
}

#[test]
fn the_sign_up_consumer_is_told_the_concurrency_and_batch_its_event_source_mapping_has() {
    let template = Template::load().unwrap();
    let function = template.functions().into_iter().find(|f| f.binary == "signup-events").unwrap();
    let variables = &function.properties["Environment"]["Variables"];
    let event = &function.properties["Events"]["SignUpQueue"]["Properties"];
    assert_eq!(variables["SIGNUP_MAXIMUM_CONCURRENCY"], event["ScalingConfig"]["MaximumConcurrency"]);
    assert_eq!(variables["SIGNUP_MAXIMUM_CONCURRENCY"]["!Ref"], "SignUpMaximumConcurrency");
    assert_eq!(variables["SES_MAX_SEND_RATE"]["!Ref"], "SesMaxSendRate");
    assert_eq!(
        variables["SIGNUP_BATCH_SIZE"].as_str().unwrap().parse::<u64>().unwrap(),
        event["BatchSize"].as_u64().unwrap()
    );
}

#[test]
fn the_default_parameters_pace_a_whole_batch_within_an_invocation() {
    let template = Template::load().unwrap();
    let parameters = &template.document()["Parameters"];
    let default = |name: &str| parameters[name]["Default"].as_u64().unwrap() as u32;
    let pace =
        mailconfirm::pacing::SendPace::per_environment(default("SesMaxSendRate"), default("SignUpMaximumConcurrency"));
    let timeout =
        std::time::Duration::from_secs(template.document()["Globals"]["Function"]["Timeout"].as_u64().unwrap());
    mailconfirm::signup_events::check_batch_fits(pace, 10, mailconfirm::aws_policy::begin_window(timeout)).unwrap();
}

#[test]
fn the_route_throttles_are_parameters() {
    let template = Template::load().unwrap();
    let settings = &template.resources()["HttpApi"]["Properties"]["DefaultRouteSettings"];
    assert_eq!(settings["ThrottlingRateLimit"]["!Ref"], "RouteThrottlingRateLimit");
    assert_eq!(settings["ThrottlingBurstLimit"]["!Ref"], "RouteThrottlingBurstLimit");
    let parameters = &template.document()["Parameters"];
    assert_eq!(parameters["RouteThrottlingRateLimit"]["Default"], 20);
    assert_eq!(parameters["RouteThrottlingBurstLimit"]["Default"], 50);
}

#[test]
fn the_sign_up_consumer_knows_the_command_detail_types_its_rule_forwards() {
    let template = Template::load().unwrap();
    let function = template.functions().into_iter().find(|f| f.binary == "signup-events").unwrap();
    let variables = &function.properties["Environment"]["Variables"];
    let forwarded = &template.resources()["SignUpEventRule"]["Properties"]["EventPattern"]["detail-type"];
    let parameters = &template.document()["Parameters"];
    let defaults = mailconfirm::signup_events::DetailTypes::default();
    for (variable, parameter, default) in [
        ("SIGNUP_RESEND_DETAIL_TYPE", "ResendEventDetailType", &defaults.resend),
        ("SIGNUP_CHANGE_EMAIL_DETAIL_TYPE", "ChangeEmailEventDetailType", &defaults.change_email),
    ] {
        assert_eq!(variables[variable]["!Ref"], parameter);
        assert!(forwarded.as_array().unwrap().iter().any(|t| t["!Ref"] == parameter), "{forwarded}");
        assert_eq!(parameters[parameter]["Default"], default.as_str());
    }
}
