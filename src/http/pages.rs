//! The pages' markup (maud: checked at compile time) and their embedded
//! assets. No build step, no CDN, no external font: `cargo build` makes the
//! whole product and it works offline. The pages hold no data: their
//! scripts fetch it with the in-memory access token.
//!
//! May import: what `http` may (its top comment).

use maud::{html, Markup, DOCTYPE};

/// The embedded assets: name, body, content type.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        include_str!("assets/app.css"),
        "text/css; charset=utf-8",
    ),
    (
        "common.js",
        include_str!("assets/common.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "login.js",
        include_str!("assets/login.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "account.js",
        include_str!("assets/account.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "admin.js",
        include_str!("assets/admin.js"),
        "text/javascript; charset=utf-8",
    ),
];

/// An embedded asset by name, and its content type.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, body, kind)| (*body, *kind))
}

/// A page: its title, its script, and above its body the notice line (by
/// `notice` id) and the error line its script fills in.
fn frame(title: &str, script: &str, notice: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Recall" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/common.js" defer {}
                script src={ "/assets/" (script) } defer {}
            }
            body {
                header.top {
                    a.brand href="/account" { "Recall" }
                    nav #nav hidden {
                        a href="/account" { "Account" }
                        a #admin-link href="/admin" hidden { "Admin" }
                        span #whoami {}
                        button #logout-here type="button" { "Log out" }
                    }
                }
                main {
                    p #(notice) .notice role="status" hidden {}
                    p #error .error role="alert" hidden {}
                    (body)
                }
            }
        }
    }
}

/// `/`: log in, and register while registration is open.
pub fn login(open_registration: bool) -> Markup {
    let body = html! {
        section.card {
            h1 { "Log in" }
            form #login {
                label { "Username" input #login-username name="username" autocomplete="username" required; }
                label { "Password" input #login-password name="password" type="password" autocomplete="current-password" required; }
                button #login-submit type="submit" { "Log in" }
            }
        }
        @if open_registration {
            section.card {
                h2 { "Create an account" }
                form #register {
                    label { "Username" input #register-username name="username" autocomplete="username" required minlength="3" maxlength="64"; }
                    label { "Password" input #register-password name="password" type="password" autocomplete="new-password" required minlength="8"; }
                    button #register-submit type="submit" { "Create account" }
                }
            }
        }
    };
    frame("Log in", "login.js", "notice", body)
}

/// `/account`: this user's live sessions, and the ways to end them.
pub fn account() -> Markup {
    let body = html! {
        section.card {
            h1 { "Your sessions" }
            p.hint { "Every device logged in to your account. A session ended anywhere disappears here within seconds." }
            table #sessions {
                thead { tr { th { "Device" } th { "Client" } th { "Bound to" } th { "IP" } th { "Created" } th { "Last used" } th {} th {} } }
                tbody {}
            }
            div.actions {
                button #logout-others type="button" { "Log out other devices" }
                button #logout-all .danger type="button" { "Log out everywhere" }
            }
        }
        section.card {
            h2 { "Change password" }
            p.hint { "Every other device is logged out." }
            form #password {
                label { "Current password" input #current-password type="password" autocomplete="current-password" required; }
                label { "New password" input #new-password type="password" autocomplete="new-password" required minlength="8"; }
                button #password-submit type="submit" { "Change password" }
            }
        }
    };
    frame("Your sessions", "account.js", "status", body)
}

/// What a session's tokens may be bound to, as the pages say it.
const BINDINGS: [(&str, &str); 4] = [
    ("none", "nothing"),
    ("network", "network"),
    ("address", "address"),
    ("dpop", "device key (DPoP)"),
];

/// One client type's policy on `/admin`: filled in and saved by admin.js.
fn policy_form(client_type: &str) -> Markup {
    let id = |field: &str| format!("policy-{client_type}-{field}");
    html! {
        form.policy #{ "policy-" (client_type) } data-client-type=(client_type) {
            h3 { (client_type) }
            label { "Access token life (s)"
                input #(id("access_ttl_secs")) name="access_ttl_secs" type="number" min="10" step="1" required; }
            label { "Refresh token life (s)"
                input #(id("refresh_ttl_secs")) name="refresh_ttl_secs" type="number" min="10" step="1" required; }
            label { "Longest session (s)"
                input #(id("session_max_secs")) name="session_max_secs" type="number" min="10" step="1" required; }
            label { "Idle timeout (s)"
                input #(id("idle_timeout_secs")) name="idle_timeout_secs" type="number" min="60" step="1" placeholder="none"; }
            label { "Bound to"
                select #(id("binding")) name="binding" {
                    @for (value, text) in BINDINGS {
                        option value=(value) { (text) }
                    }
                }
            }
            div.prefixes hidden {
                label { "IPv4 prefix"
                    input #(id("ipv4_prefix")) name="ipv4_prefix" type="number" min="8" max="32" step="1" value="24" required; }
                label { "IPv6 prefix"
                    input #(id("ipv6_prefix")) name="ipv6_prefix" type="number" min="16" max="128" step="1" value="56" required; }
            }
            label { "Used from elsewhere"
                select #(id("on_mismatch")) name="on_mismatch" {
                    option value="reject" { "reject the request" }
                    option value="revoke" { "reject and revoke the session" }
                }
            }
            button type="submit" disabled { "Save " (client_type) " policy" }
        }
    }
}

/// `/admin`: the emergency controls.
pub fn admin() -> Markup {
    let body = html! {
        section.card {
            h1 { "Find a user" }
            form #find {
                label { "Username" input #find-username required; }
                button type="submit" { "Find" }
            }
            div #user hidden {
                h2 #user-name {}
                p.hint { "id " code #user-id {} " · " span #user-locked {} }
                table #user-sessions {
                    thead { tr { th { "Device" } th { "Client" } th { "Bound to" } th { "IP" } th { "Created" } th { "Last used" } th {} } }
                    tbody {}
                }
                form #lock .inline {
                    label { "Lock for"
                        select #lock-duration {
                            option value="900" { "15 minutes" }
                            option value="3600" selected { "1 hour" }
                            option value="86400" { "24 hours" }
                            option value="604800" { "7 days" }
                        }
                    }
                    label { "Reason" input #lock-reason maxlength="256"; }
                    button #lock-submit .danger type="submit" { "Lock" }
                }
                div.actions {
                    button #unlock type="button" { "Unlock" }
                    button #revoke .danger type="button" { "Revoke all sessions" }
                    button #watch-user type="button" { "Show only this user's events" }
                    button #erase .danger type="button" { "Erase user…" }
                }
                div #confirm-erase .confirm hidden {
                    p { strong { "Erasing ends every session of this user now and makes their personal data in the log unreadable for good." }
                        " The username becomes free; ids stay in the audit trail. This cannot be undone." }
                    label { "Type the username to confirm" input #erase-name autocomplete="off"; }
                    button #confirm-erase-go .danger type="button" { "Erase for good" }
                    button #cancel-erase type="button" { "Cancel" }
                }
            }
        }
        section.card #validity {
            h2 { "Was this token valid at …?" }
            p.hint { "Replays the log up to that moment: would the token (or any token of the session) have been accepted, and which events decide it." }
            form #validity-form {
                label { "Access token or session id" textarea #validity-subject rows="3" required {} }
                label { "At (your local time)" input #validity-at type="datetime-local" step="1" required; }
                button type="submit" { "Check" }
            }
            div #validity-answer hidden {
                p { strong #validity-verdict {} " " span #validity-reason .hint {} }
                ol #validity-events {}
            }
        }
        section.card #integrity {
            h2 { "Log integrity" }
            p.hint { "Every event carries the hash of the one before it; signed checkpoints pin the chain for outside parties (verify them with the JWKS)." }
            div.actions {
                button #verify-log type="button" { "Verify the whole log" }
                button #sign-checkpoint type="button" { "Sign a checkpoint now" }
            }
            p #verify-result {}
            p #checkpoint-result .hint {}
        }
        section.card {
            h2 { "Signing keys" }
            div.actions {
                button #rotate type="button" { "Rotate (scheduled)" }
                button #rotate-compromised .danger type="button" { "Rotate as compromised…" }
            }
            div #confirm-compromised .confirm hidden {
                p { strong { "Every token the current key signed dies now, on every instance." }
                    " Logged-in users get new tokens silently from their refresh tokens." }
                button #confirm-rotate .danger type="button" { "Yes: revoke the current key" }
                button #cancel-rotate type="button" { "Cancel" }
            }
            table #keys {
                thead { tr { th { "kid" } th { "alg" } th { "status" } th { "created" } } }
                tbody {}
            }
        }
        section.card #policies {
            h2 { "Client policies" }
            p.hint { "Per client type: how long its tokens and sessions live, and what its tokens are bound to. "
                "A change applies to sessions that log in after it; nobody is logged out by it." }
            div.policies {
                @for t in crate::domain::CLIENT_TYPES {
                    (policy_form(t))
                }
            }
        }
        section.card {
            h2 { "Live events" }
            form #filters .inline {
                label { "User id" input #filter-user placeholder="any"; }
                label { "Type"
                    select #filter-type {
                        option value="" { "any" }
                        @for t in crate::events::KINDS {
                            option value=(t) { (t) }
                        }
                    }
                }
                span #stream-state .hint { "connecting…" }
            }
            ol #events reversed {}
        }
    };
    frame("Admin", "admin.js", "status", body)
}
