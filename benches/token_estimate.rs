//! How far the relay's input-token estimate (`keyward::relay::tokens`) is from real tokenizers.
//!
//! `cargo bench --bench token_estimate` reads every file of `bench/corpus/` (prose, technical text,
//! source code, JSON, tables, logs, a chat transcript, German, French, Chinese, Japanese), counts
//! each with the estimator and with tiktoken-rs's `cl100k_base` and `o200k_base`, and does the same
//! for chat requests built from the corpus (the estimator's `chat()` against the tokenizer's count
//! plus OpenAI's documented framing: 3 tokens per message, the role, 1 + the name's tokens for a
//! `name`, 3 to prime the reply). Error is (estimate - reference) / reference: positive means the
//! estimate charges more than the tokenizer (the safe side for an input limit).
//!
//! The output is line-oriented and stable (no timings), so its summary lines can be quoted:
//! `summary <text|chat> <encoding>: n=.. mape=..% max_err=..% (..) under=.. ratio=..`.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::run();
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use keyward::relay::tokens;
    use serde_json::{json, Value};
    use std::path::{Path, PathBuf};
    use tiktoken_rs::CoreBPE;

    /// One compared item: a file or a chat request.
    struct Row {
        name: String,
        bytes: usize,
        estimate: u64,
        /// Reference counts, one per encoding (same order as `encodings()`).
        reference: Vec<u64>,
    }

    fn encodings() -> Vec<(&'static str, &'static CoreBPE)> {
        vec![
            ("cl100k_base", tiktoken_rs::cl100k_base_singleton()),
            ("o200k_base", tiktoken_rs::o200k_base_singleton()),
        ]
    }

    fn corpus_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/corpus")
    }

    fn read_corpus() -> Vec<(String, String)> {
        let dir = corpus_dir();
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .filter_map(|entry| {
                let entry = entry.ok()?;
                if !entry.file_type().ok()?.is_file() {
                    return None;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(entry.path()).ok()?;
                Some((name, text))
            })
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus files in {}", dir.display());
        files
    }

    fn count(bpe: &CoreBPE, s: &str) -> u64 {
        bpe.encode_ordinary(s).len() as u64
    }

    /// What OpenAI bills for a chat request's input (the cookbook's `num_tokens_from_messages`).
    fn reference_chat(bpe: &CoreBPE, body: &Value) -> u64 {
        let messages = body["messages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut n = 0;
        for m in messages {
            n += tokens::PER_MESSAGE;
            n += m["role"].as_str().map_or(0, |r| count(bpe, r));
            n += match &m["content"] {
                Value::String(s) => count(bpe, s),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .map(|t| count(bpe, t))
                    .sum(),
                _ => 0,
            };
            if let Some(name) = m["name"].as_str() {
                n += 1 + count(bpe, name);
            }
        }
        n + tokens::REPLY_PRIMING
    }

    /// Chat requests from the corpus: each file as a user message under a system prompt, the
    /// transcript as a multi-turn conversation (with a `name`), and two files as text parts.
    fn chat_requests(files: &[(String, String)]) -> Vec<(String, Value)> {
        const SYSTEM: &str = "You are a helpful assistant. Answer briefly and cite the text.";
        let mut out: Vec<(String, Value)> = files
            .iter()
            .map(|(name, text)| {
                let body = json!({"model": "gpt-4o-mini", "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": text},
                ]});
                (format!("chat:{name}"), body)
            })
            .collect();
        if let Some((name, text)) = files.iter().find(|(n, _)| n.contains("chat_transcript")) {
            let messages: Vec<Value> = text
                .lines()
                .filter_map(|line| line.split_once(": "))
                .enumerate()
                .map(|(i, (role, content))| {
                    if role == "user" && i == 1 {
                        json!({"role": role, "content": content, "name": "alice"})
                    } else {
                        json!({"role": role, "content": content})
                    }
                })
                .collect();
            out.push((
                format!("turns:{name}"),
                json!({"model": "gpt-4o-mini", "messages": messages}),
            ));
        }
        if files.len() >= 2 {
            let parts: Vec<Value> = files[..2]
                .iter()
                .map(|(_, t)| json!({"type": "text", "text": t}))
                .collect();
            out.push((
                "parts:first-two-files".into(),
                json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": parts}]}),
            ));
        }
        out
    }

    fn err_pct(estimate: u64, reference: u64) -> f64 {
        if reference == 0 {
            0.0
        } else {
            (estimate as f64 - reference as f64) / reference as f64 * 100.0
        }
    }

    fn print_table(title: &str, rows: &[Row], encs: &[(&str, &CoreBPE)]) {
        println!("{title}");
        let mut header = format!("  {:<32} {:>6} {:>8}", "item", "bytes", "estimate");
        for (e, _) in encs {
            header.push_str(&format!(" {:>11} {:>8}", e, "err"));
        }
        println!("{header}");
        for r in rows {
            let mut line = format!("  {:<32} {:>6} {:>8}", r.name, r.bytes, r.estimate);
            for (i, _) in encs.iter().enumerate() {
                line.push_str(&format!(
                    " {:>11} {:>+7.1}%",
                    r.reference[i],
                    err_pct(r.estimate, r.reference[i])
                ));
            }
            println!("{line}");
        }
        println!();
    }

    fn summarize(kind: &str, rows: &[Row], encs: &[(&str, &CoreBPE)]) {
        for (i, (enc, _)) in encs.iter().enumerate() {
            let errs: Vec<f64> = rows
                .iter()
                .map(|r| err_pct(r.estimate, r.reference[i]))
                .collect();
            let mape = errs.iter().map(|e| e.abs()).sum::<f64>() / errs.len() as f64;
            let (worst, worst_err) = rows
                .iter()
                .zip(&errs)
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .map(|(r, e)| (r.name.as_str(), *e))
                .unwrap_or(("-", 0.0));
            let under = errs.iter().filter(|e| **e < 0.0).count();
            let est: u64 = rows.iter().map(|r| r.estimate).sum();
            let reference: u64 = rows.iter().map(|r| r.reference[i]).sum();
            println!(
                "summary {kind} {enc}: n={} mape={mape:.1}% max_err={worst_err:+.1}% ({worst}) under={under}/{} ratio={:.3} (estimate {est} / reference {reference})",
                rows.len(),
                rows.len(),
                est as f64 / reference as f64,
            );
        }
    }

    pub fn run() {
        let encs = encodings();
        let files = read_corpus();
        let total: usize = files.iter().map(|(_, t)| t.len()).sum();
        println!(
            "token_estimate: keyward::relay::tokens vs tiktoken-rs (cl100k_base, o200k_base); err = (estimate - reference) / reference"
        );
        println!("corpus: bench/corpus, {} files, {total} bytes", files.len());
        println!();

        let text_rows: Vec<Row> = files
            .iter()
            .map(|(name, text)| Row {
                name: name.clone(),
                bytes: text.len(),
                estimate: tokens::text(text),
                reference: encs.iter().map(|(_, b)| count(b, text)).collect(),
            })
            .collect();
        print_table("text (tokens::text vs encode):", &text_rows, &encs);

        let chat_rows: Vec<Row> = chat_requests(&files)
            .into_iter()
            .map(|(name, body)| Row {
                bytes: body.to_string().len(),
                estimate: tokens::chat(&body),
                reference: encs.iter().map(|(_, b)| reference_chat(b, &body)).collect(),
                name,
            })
            .collect();
        print_table(
            "chat requests (tokens::chat vs encode + OpenAI framing):",
            &chat_rows,
            &encs,
        );

        summarize("text", &text_rows, &encs);
        summarize("chat", &chat_rows, &encs);
    }
}
