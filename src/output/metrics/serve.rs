//! `--metrics-listen ADDR`: an HTTP endpoint serving `/metrics` while a copy or a follower
//! runs, on a thread of its own, with a small synchronous HTTP server (no async runtime).
//! Each scrape renders the live figures then; nothing is kept between scrapes.

use super::live::LIVE;
use super::{build_info, render};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The endpoint; it stops when dropped.
pub(crate) struct Endpoint {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

/// Starts serving on `addr`.
pub(crate) fn start(addr: SocketAddr) -> Result<Endpoint> {
    let server = tiny_http::Server::http(addr)
        .map_err(|err| anyhow::anyhow!("{err}"))
        .with_context(|| format!("listening for metrics scrapes on {addr}"))?;
    let server = Arc::new(server);
    log::info!("serving metrics on http://{addr}/metrics");
    let serving = Arc::clone(&server);
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in serving.incoming_requests() {
                answer(request);
            }
        })
        .context("starting the metrics endpoint's thread")?;
    Ok(Endpoint {
        server,
        thread: Some(thread),
    })
}

/// `GET /metrics`: the live figures; anything else: 404 (405 for another method).
fn answer(request: tiny_http::Request) {
    let path = request.url().split('?').next().unwrap_or("");
    let response = match (request.method(), path) {
        (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => {
            let mut families = LIVE.families();
            families.push(build_info());
            let content_type = tiny_http::Header::from_bytes(
                "Content-Type",
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .ok();
            let mut response = tiny_http::Response::from_string(render(&families));
            if let Some(header) = content_type {
                response = response.with_header(header);
            }
            response
        }
        (tiny_http::Method::Get | tiny_http::Method::Head, _) => {
            tiny_http::Response::from_string("pgcopy serves /metrics\n").with_status_code(404)
        }
        _ => tiny_http::Response::from_string("").with_status_code(405),
    };
    // A scraper that went away is no concern of the copy's.
    let _ = request.respond(response);
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
