//! The body of the webhook figures: a GitHub push event of exactly the size asked for.
//!
//! The daemon stores bodies compressed (LZ4), so a body padded with one repeated character
//! would shrink to nothing and flatter it. This one is shaped like a real push delivery:
//! a repository object whose many API URLs repeat the same prefix, commits with random
//! 40-digit hashes (which do not compress), authors, and commit messages. Its LZ4 ratio is
//! printed with the figure, to be compared with that of real payloads (BENCHMARKS.md: a real
//! 6.1 KB push event is 2.3 KB in LZ4, a ratio of 2.7).

use serde_json::{Value, json};

/// A push event of exactly `bytes` bytes of JSON (at least ~2.5 KB: the repository and
/// one commit). Real ones carry more of the repository's URLs; this one keeps a dozen so
/// that 4 KiB holds a few commits.
pub fn push_event(bytes: usize) -> String {
    let repo = "acme-corp/billing-service";
    let mut commits = Vec::new();
    loop {
        commits.push(commit(repo, commits.len()));
        let text = event(repo, &commits, "").to_string();
        if text.len() > bytes {
            commits.pop();
            break;
        }
    }
    // Fill what is left with the head commit's message body, a byte per character.
    let short = event(repo, &commits, "").to_string().len();
    // Words in a pseudo-random order: prose, not one sentence repeated (which LZ4 would
    // store as a single back-reference).
    let need = bytes.saturating_sub(short);
    let mut filler = String::with_capacity(need + 16);
    let mut state: u32 = 0x9e37_79b9;
    while filler.len() < need {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        filler.push_str(WORDS[state as usize % WORDS.len()]);
        filler.push(' ');
    }
    filler.truncate(need);
    let text = event(repo, &commits, &filler).to_string();
    assert_eq!(text.len(), bytes, "the push event has the size asked for");
    text
}

/// The LZ4-compressed size of `text`, as the daemon would store it.
pub fn compressed_len(text: &str) -> usize {
    lz4_flex::block::compress(text.as_bytes()).len()
}

const WORDS: &[&str] = &[
    "Fix",
    "rounding",
    "of",
    "prorated",
    "invoices",
    "when",
    "a",
    "plan",
    "changes",
    "mid-cycle;",
    "the",
    "old",
    "code",
    "charged",
    "the",
    "full",
    "month",
    "twice.",
    "Adds",
    "tests",
    "for",
    "leap",
    "years",
    "and",
    "time",
    "zones",
    "west",
    "of",
    "UTC.",
    "Refs",
    "#4127.",
];

fn hash() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn person(name: &str, login: &str) -> Value {
    json!({"name": name, "email": format!("{login}@users.noreply.github.com"), "username": login})
}

fn commit(repo: &str, n: usize) -> Value {
    let id = hash();
    let (name, login) = [
        ("Dana Whitfield", "dwhitfield"),
        ("Tomas Okafor", "tokafor"),
    ][n % 2];
    json!({
        "id": id,
        "tree_id": hash(),
        "distinct": true,
        "message": format!("{} {} {}", WORDS[n % WORDS.len()], WORDS[(n * 7 + 3) % WORDS.len()], WORDS[(n * 3 + 1) % WORDS.len()]),
        "timestamp": format!("2026-11-21T10:{:02}:{:02}+01:00", n % 60, (n * 17) % 60),
        "url": format!("https://github.com/{repo}/commit/{id}"),
        "author": person(name, login),
        "committer": person("GitHub", "noreply"),
        "added": [],
        "removed": [],
        "modified": [format!("src/invoice/proration_{n}.rs")],
    })
}

fn event(repo: &str, commits: &[Value], message_body: &str) -> Value {
    let api = format!("https://api.github.com/repos/{repo}");
    let mut head = commits.last().cloned().unwrap_or(Value::Null);
    if let Some(message) = head.get_mut("message") {
        *message = json!(format!(
            "{}\n\n{message_body}",
            message.as_str().unwrap_or("")
        ));
    }
    let urls: Value = [
        "forks", "hooks", "events", "branches", "tags", "statuses", "commits", "contents",
        "compare", "issues", "pulls", "releases",
    ]
    .iter()
    .map(|name| (format!("{name}_url"), json!(format!("{api}/{name}"))))
    .collect::<serde_json::Map<String, Value>>()
    .into();
    let mut repository = json!({
        "id": 493_817_265,
        "node_id": "R_kgDOHW8a0Q",
        "name": "billing-service",
        "full_name": repo,
        "private": true,
        "owner": {
            "name": "acme-corp",
            "login": "acme-corp",
            "id": 81_726_354,
            "avatar_url": "https://avatars.githubusercontent.com/u/81726354?v=4",
            "url": "https://api.github.com/users/acme-corp",
            "html_url": "https://github.com/acme-corp",
            "type": "Organization",
        },
        "html_url": format!("https://github.com/{repo}"),
        "description": "Invoices, plans and proration",
        "fork": false,
        "url": api,
        "created_at": 1_652_345_678,
        "updated_at": "2026-11-20T16:02:11Z",
        "pushed_at": 1_763_719_200,
        "default_branch": "main",
    });
    if let (Some(repository), Value::Object(urls)) = (repository.as_object_mut(), urls) {
        repository.extend(urls);
    }
    json!({
        "ref": "refs/heads/main",
        "before": hash(),
        "after": head.get("id").cloned().unwrap_or(Value::Null),
        "repository": repository,
        "pusher": {"name": "dwhitfield", "email": "dwhitfield@users.noreply.github.com"},
        "sender": {
            "login": "dwhitfield",
            "id": 5_512_344,
            "avatar_url": "https://avatars.githubusercontent.com/u/5512344?v=4",
            "url": "https://api.github.com/users/dwhitfield",
            "type": "User",
        },
        "created": false,
        "deleted": false,
        "forced": false,
        "compare": format!("https://github.com/{repo}/compare/main"),
        "commits": commits,
        "head_commit": head,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_push_event_has_exactly_the_size_asked_for_and_is_json() {
        for bytes in [4_096, 8_192, 16_384] {
            let text = super::push_event(bytes);
            assert_eq!(text.len(), bytes);
            let event: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(!event["commits"].as_array().unwrap().is_empty());
            println!("{bytes} bytes: {} in LZ4", super::compressed_len(&text));
        }
    }
}
