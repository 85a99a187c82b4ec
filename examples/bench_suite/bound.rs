//! `bound-prep`: request lines for the bound-token benchmark
//! (`scripts/bench_bound.sh`). Against a running Recall it gets tokens
//! over HTTP (one login each, then refreshes for more distinct tokens) and
//! writes one file per case, one request per line, for `bench/wrk_bound.lua`:
//! `SCHEME TOKEN PROOF XFF` (PROOF and XFF `-` when absent). Every DPoP
//! line has a proof of its own (a proof is good once), made just before
//! the run (it is good for 60 s).

use base64::Engine;
use recall_verifier::dpop::{ath, ed25519_proof};

use super::*;

/// What the lines are for.
pub(super) struct Prep {
    pub base: String,
    pub out: PathBuf,
    /// Distinct tokens for the cache-miss cases.
    pub tokens: usize,
    /// Lines per case.
    pub lines: usize,
}

const SEED: [u8; 32] = [42; 32];
const HOME: &str = "203.0.113.5";

async fn post(
    http: &reqwest::Client,
    url: String,
    dpop: Option<String>,
    xff: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let mut req = http.post(url).json(&body);
    if let Some(p) = dpop {
        req = req.header("dpop", p);
    }
    if let Some(ip) = xff {
        req = req.header("x-forwarded-for", ip);
    }
    let res = req.send().await?;
    let status = res.status();
    let body: Value = res.json().await?;
    anyhow::ensure!(status.is_success(), "{status}: {body}");
    Ok(body)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn proof(url: &str, method: &str, token: Option<&str>) -> String {
    let hash = token.map(ath);
    let jti = Uuid::new_v4().simple().to_string();
    ed25519_proof(&SEED, method, url, now(), &jti, hash.as_deref(), None)
}

/// `n` distinct tokens: `CHAINS` sessions at once, each a login and then
/// refreshes (each refresh a new token).
async fn tokens(
    http: &reqwest::Client,
    base: &str,
    logins: &[Value],
    dpop: bool,
    xff: Option<&str>,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    // One user per chain: parallel logins of one name are parallel
    // guesses, which the brute-force budget counts (G10).
    let chains_n = logins.len().min(n.max(1));
    let mut chains = Vec::new();
    for (c, login) in logins.iter().take(chains_n).enumerate() {
        let (http, base, login, xff) = (
            http.clone(),
            base.to_owned(),
            login.clone(),
            xff.map(str::to_owned),
        );
        let each = n / chains_n + usize::from(c < n % chains_n);
        chains.push(tokio::spawn(async move {
            let p = |path: &str| dpop.then(|| proof(&format!("{base}{path}"), "POST", None));
            let url = |path: &str| format!("{base}{path}");
            let mut answer = post(
                &http,
                url("/v1/auth/login"),
                p("/v1/auth/login"),
                xff.as_deref(),
                login,
            )
            .await?;
            let access = |a: &Value| a["access_token"].as_str().unwrap_or_default().to_owned();
            let mut out = vec![access(&answer)];
            while out.len() < each {
                let body = json!({ "refresh_token": answer["refresh_token"] });
                answer = post(
                    &http,
                    url("/v1/auth/refresh"),
                    p("/v1/auth/refresh"),
                    xff.as_deref(),
                    body,
                )
                .await?;
                out.push(access(&answer));
            }
            anyhow::Ok(out)
        }));
    }
    let mut out = Vec::with_capacity(n);
    for c in chains {
        out.extend(c.await??);
    }
    out.truncate(n);
    Ok(out)
}

pub(super) async fn prep(p: &Prep) -> anyhow::Result<Value> {
    let http = reqwest::Client::new();
    let base = p.base.trim_end_matches('/');
    let mut users = Vec::new();
    for _ in 0..16 {
        let user = format!("bound{}", &Uuid::new_v4().simple().to_string()[..8]);
        let body = json!({ "username": user, "password": PASSWORD });
        post(&http, format!("{base}/v1/users"), None, None, body).await?;
        users.push(user);
    }
    let login = |ctype: &str| -> Vec<Value> {
        users
            .iter()
            .map(|u| json!({ "username": u, "password": PASSWORD, "client_type": ctype }))
            .collect()
    };
    progress(
        "bound",
        &format!("{} tokens per case from {base}", p.tokens),
    );
    // A miss run sends each token once: as many tokens as it may send.
    let bearer = tokens(&http, base, &login("web"), false, None, p.lines).await?;
    let dpop = tokens(&http, base, &login("web"), true, None, p.tokens).await?;
    // `mobile` is network-bound (the script set its policy).
    let net = tokens(&http, base, &login("mobile"), false, Some(HOME), p.lines).await?;
    anyhow::ensure!(
        net[0].split('.').nth(1).is_some_and(|c| {
            let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .unwrap_or_default();
            String::from_utf8_lossy(&claims).contains("\"net\"")
        }),
        "the mobile token is not network-bound: set the mobile policy first"
    );
    std::fs::create_dir_all(&p.out)?;
    let write = |name: &str, lines: Vec<String>| -> anyhow::Result<()> {
        std::fs::write(p.out.join(name), lines.join("\n") + "\n")?;
        Ok(())
    };
    // Hits: one token on every line; misses: every token once.
    let pick = |set: &[String], i: usize, hit: bool| set[if hit { 0 } else { i }].clone();
    for (case, hit) in [("hit", true), ("miss", false)] {
        write(
            &format!("bearer_{case}.txt"),
            (0..bearer.len())
                .map(|i| format!("Bearer {} - -", pick(&bearer, i, hit)))
                .collect(),
        )?;
        write(
            &format!("net_{case}.txt"),
            (0..net.len())
                .map(|i| format!("Bearer {} - {HOME}", pick(&net, i, hit)))
                .collect(),
        )?;
    }
    write("dpop_tokens.txt", dpop)?;
    progress(
        "bound",
        &format!("{} lines per case in {}", p.lines, p.out.display()),
    );
    Ok(json!({ "lines": p.lines, "tokens": p.tokens }))
}

/// `bound-proofs`: `lines` DPoP request lines for `GET url`, each with a
/// proof of its own made now, all for the first token of `tokens` (`hit`)
/// or for each token in turn (a cache miss each).
pub(super) fn proofs(
    tokens: &Path,
    url: &str,
    lines: usize,
    hit: bool,
    out: &Path,
) -> anyhow::Result<Value> {
    let set: Vec<String> = std::fs::read_to_string(tokens)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(!set.is_empty(), "no tokens in {}", tokens.display());
    let text: String = (0..lines)
        .map(|i| {
            let t = &set[if hit { 0 } else { i % set.len() }];
            format!("DPoP {t} {} -\n", proof(url, "GET", Some(t)))
        })
        .collect();
    std::fs::write(out, text)?;
    Ok(json!({ "lines": lines }))
}
