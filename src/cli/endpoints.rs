//! `hookd endpoints ...`: list endpoints with their counts, show one, and change one at run time (settings,
//! pause/resume/enable, the verification handshake); every verb that changes an endpoint shows it after.

use super::CliError;
use super::args::{Connection, EndpointsVerb};
use super::connect::connect;
use super::output::{output, print_table, row};
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
        EndpointsVerb::List => {
            let list = client.endpoints().await?;
            output(connection, &list, |l| print_endpoints(&l.endpoints));
            return Ok(());
        }
        EndpointsVerb::Show { name } => client.endpoint(&name).await?,
        EndpointsVerb::Set {
            name,
            url,
            timeout_ms,
            max_attempts,
            max_age,
        } => {
            let settings = EndpointSettings {
                url,
                timeout_ms,
                max_attempts,
                max_age,
            };
            client.update_endpoint(&name, &settings).await?
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
    outln!("format:       {}", e.format);
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
