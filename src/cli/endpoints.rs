//! `hookd endpoints ...`: list endpoints with their counts, show one, create, change, reset and delete them
//! at run time (settings, pause/resume/enable, the verification handshake); every verb that changes an
//! endpoint shows it after. `delete --messages` asks first when the endpoint has messages to retire
//! (`confirm`), and `delete --dry-run` shows what a delete would do.

use super::CliError;
use super::args::{Connection, EndpointsVerb};
use super::confirm;
use super::connect::connect;
use super::output::{output, print_table, row};
use super::settings;
use crate::api::wire::EndpointView;
use crate::config::EndpointSettings;

/// `hookd endpoints ...`.
pub(super) async fn run_endpoints(
    verb: EndpointsVerb,
    connection: &Connection,
) -> Result<(), CliError> {
    let client = connect(connection)?;
    // `verify` fails (after the output) unless the handshake left the endpoint active.
    let mut verified = None;
    let endpoint = match verb {
        EndpointsVerb::List {
            format,
            state,
            prefix,
            limit,
            after,
        } => {
            let query = list_query(&[
                ("format", format),
                ("state", state),
                ("prefix", prefix),
                ("limit", Some(limit.to_string())),
                ("after", after),
            ]);
            let list = client.endpoints(&query).await?;
            output(connection, &list, |l| {
                print_endpoints(&l.endpoints);
                if let Some(next) = &l.next {
                    errln!("more: hookd endpoints list --after {next}");
                }
            });
            return Ok(());
        }
        EndpointsVerb::Show { name } => client.endpoint(&name).await?,
        EndpointsVerb::Create {
            name,
            format,
            url,
            auth,
            set,
        } => {
            let mut table = settings::table(&set, &auth)?;
            table.insert("name".into(), name.into());
            table.insert("format".into(), format.into());
            table.insert("url".into(), url.into());
            client.create_endpoint(&table).await?
        }
        EndpointsVerb::Delete {
            name,
            messages,
            yes,
            dry_run,
        } => {
            let mut messages = messages;
            if dry_run || messages.is_some() {
                let endpoint = client.endpoint(&name).await?;
                let waiting = endpoint.counts.queued + endpoint.counts.in_flight;
                if dry_run {
                    let plan = DeletePlan::of(&endpoint, messages.as_deref());
                    output(connection, &plan, |p| {
                        for line in p.lines() {
                            outln!("{line}");
                        }
                        outln!("(dry run, nothing changed)");
                    });
                    return Ok(());
                }
                if waiting == 0 {
                    // Nothing to retire: deleted without `messages`, so one enqueued meanwhile makes the
                    // daemon refuse instead of retiring a message nobody was asked about.
                    messages = None;
                } else if confirm::needs_asking(
                    yes,
                    &format!(
                        "endpoints delete {name} --messages {} retires its {waiting} waiting messages",
                        messages.as_deref().unwrap_or_default()
                    ),
                )? {
                    for line in DeletePlan::of(&endpoint, messages.as_deref()).lines() {
                        errln!("{line}");
                    }
                    confirm::ask(&format!("Delete endpoint `{name}`?"), "nothing was deleted")?;
                }
            }
            let deleted = client.delete_endpoint(&name, messages.as_deref()).await?;
            output(connection, &deleted, |d| {
                outln!("deleted {} ({} messages retired)", d.name, d.retired)
            });
            return Ok(());
        }
        EndpointsVerb::Reset { name } => client.reset_endpoint(&name).await?,
        EndpointsVerb::Set {
            name,
            url,
            timeout_ms,
            max_attempts,
            max_age,
            auth,
            set,
        } => {
            let mut table = EndpointSettings {
                url,
                timeout_ms,
                max_attempts,
                max_age,
            }
            .to_table();
            table.extend(settings::table(&set, &auth)?);
            if table.is_empty() {
                return Err(CliError::Usage(
                    "give at least one setting to change (--url, --timeout-ms, --max-attempts, --max-age, --auth-*, --set KEY=VALUE)".into(),
                ));
            }
            client.patch_endpoint(&name, &table).await?
        }
        EndpointsVerb::Pause { name } => client.control_endpoint(&name, "pause").await?,
        EndpointsVerb::Resume { name } => client.control_endpoint(&name, "resume").await?,
        EndpointsVerb::Enable { name } => client.control_endpoint(&name, "enable").await?,
        EndpointsVerb::Verify { name } => {
            let endpoint = client.verify_endpoint(&name).await?;
            verified = Some(name);
            endpoint
        }
    };
    output(connection, &endpoint, print_endpoint);
    match verified {
        Some(name) if endpoint.state != "active" => Err(CliError::Partial(format!(
            "endpoint `{name}` is {}",
            endpoint.state
        ))),
        _ => Ok(()),
    }
}

/// What `endpoints delete` would do, as its dry run shows it (and as the question before it shows it).
#[derive(Debug, serde::Serialize)]
struct DeletePlan {
    name: String,
    origin: String,
    dry_run: bool,
    counts: crate::store::StageCounts,
    /// What becomes of the waiting (queued and in-flight) messages: `dead-letter`, `purge`, or absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<String>,
    /// What the delete would do, in words.
    outcome: String,
}

impl DeletePlan {
    fn of(endpoint: &EndpointView, messages: Option<&str>) -> DeletePlan {
        let c = &endpoint.counts;
        let waiting = c.queued + c.in_flight;
        let outcome = if endpoint.origin != "api" {
            format!(
                "would be refused: `{}` is declared in the config file (remove its table there and restart)",
                endpoint.name
            )
        } else {
            match (waiting, messages) {
                (0, _) => "would delete it; it has no waiting messages".to_owned(),
                (n, Some("dead-letter")) => format!(
                    "would delete it and dead-letter its {n} waiting messages (reason \"endpoint deleted\")"
                ),
                (n, Some(_)) => {
                    format!("would delete it and purge its {n} waiting messages for good")
                }
                (n, None) => format!(
                    "would be refused while it has {n} waiting messages (give --messages dead-letter or purge)"
                ),
            }
        };
        DeletePlan {
            name: endpoint.name.clone(),
            origin: endpoint.origin.clone(),
            dry_run: true,
            counts: *c,
            messages: messages.map(str::to_owned),
            outcome,
        }
    }
}

impl DeletePlan {
    /// The plan for people: on stdout for a dry run, on stderr before the question.
    fn lines(&self) -> [String; 3] {
        let c = &self.counts;
        [
            format!("endpoint:  {} (defined by {})", self.name, self.origin),
            format!(
                "messages:  {} queued, {} in flight, {} delivered, {} dead",
                c.queued, c.in_flight, c.delivered, c.dead
            ),
            format!("delete:    {}", self.outcome),
        ]
    }
}

/// `key=value&...` of the given values, encoded.
fn list_query(pairs: &[(&str, Option<String>)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        if let Some(value) = value {
            query.append_pair(key, value);
        }
    }
    query.finish()
}

/// Endpoints as a table: name, format, state, counts, URL.
fn print_endpoints(endpoints: &[EndpointView]) {
    let mut rows = vec![row([
        "NAME",
        "FORMAT",
        "STATE",
        "QUEUED",
        "IN_FLIGHT",
        "DELIVERED",
        "DEAD",
        "URL",
    ])];
    for e in endpoints {
        rows.push(vec![
            e.name.clone(),
            e.format.clone(),
            e.state.clone(),
            e.counts.queued.to_string(),
            e.counts.in_flight.to_string(),
            e.counts.delivered.to_string(),
            e.counts.dead.to_string(),
            e.url.clone(),
        ]);
    }
    print_table(&rows);
}

/// One endpoint, a field a line: settings, state, circuit breaker and counts.
fn print_endpoint(e: &EndpointView) {
    outln!("name:         {}", e.name);
    outln!("url:          {}", e.url);
    for (kind, url) in &e.urls {
        outln!("url ({kind}): {url}");
    }
    outln!("format:       {}", e.format);
    match e.verification.as_deref() {
        Some("none") => outln!("verification: none (declared: no handshake before use)"),
        Some(how) => outln!("verification: {how}"),
        None => {}
    }
    outln!("origin:       {}", e.origin);
    if !e.overrides.is_empty() {
        outln!(
            "overrides:    {} (run-time; `hookd endpoints reset {}` drops them)",
            e.overrides.join(", "),
            e.name
        );
    }
    match &e.state_reason {
        Some(reason) => outln!("state:        {} ({reason})", e.state),
        None => outln!("state:        {}", e.state),
    }
    let circuit = &e.circuit;
    outln!(
        "circuit:      {}, {} consecutive failures (opens at {}, cooldown {} ms)",
        circuit.state,
        circuit.consecutive_failures,
        circuit.failure_threshold,
        circuit.cooldown_ms
    );
    if let Some(rate) = e.rate_limit {
        outln!("rate_limit:   {rate} requests/s");
    }
    outln!("signed:       {}", if e.signed { "yes" } else { "no" });
    outln!("timeout_ms:   {}", e.timeout_ms);
    outln!("concurrency:  {}", e.concurrency);
    outln!("max_attempts: {}", e.max_attempts);
    outln!("max_age:      {}", e.max_age);
    outln!("retry:        {}", e.retry);
    outln!("auth:         {}", e.auth.as_deref().unwrap_or("none"));
    let c = &e.counts;
    outln!(
        "messages:     {} queued, {} in flight, {} delivered, {} dead",
        c.queued,
        c.in_flight,
        c.delivered,
        c.dead
    );
}
