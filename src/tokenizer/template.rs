//! Chat templates: the Jinja template in `tokenizer.chat_template`, rendered with
//! minijinja, or a documented fallback for files that have none.

use super::pyjinja;
use crate::error::{Error, Result};
use minijinja::{Environment, ErrorKind, Value};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// One turn of a conversation, as OpenAI's API and transformers' templates take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    /// None for an assistant turn that only calls tools (OpenAI's `content: null`). OpenAI's
    /// list of content parts is read as its text parts, one after another on their own
    /// lines (this engine reads text only).
    #[serde(default, deserialize_with = "content_text")]
    pub content: Option<String>,
    /// Whatever else the turn carries, for the templates that read it: `tool_calls`,
    /// `tool_call_id`, `name`, `reasoning_content`.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A turn's content: a string, none, or OpenAI's parts (`[{"type": "text", "text": …}]`).
fn content_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    use serde::de::Error as _;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Content {
        Text(String),
        Parts(Vec<serde_json::Map<String, serde_json::Value>>),
    }
    Ok(match Option::<Content>::deserialize(d)? {
        None => None,
        Some(Content::Text(t)) => Some(t),
        Some(Content::Parts(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for p in &parts {
                match (
                    p.get("type").and_then(|t| t.as_str()),
                    p.get("text").and_then(|t| t.as_str()),
                ) {
                    (Some("text"), Some(text)) => texts.push(text),
                    (kind, _) => {
                        return Err(D::Error::custom(format!(
                            "a content part of type {} (only text parts are read: the model reads text)",
                            kind.unwrap_or("(none)")
                        )))
                    }
                }
            }
            Some(texts.join("\n"))
        }
    })
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message {
            role: role.into(),
            content: Some(content.into()),
            extra: Default::default(),
        }
    }

    /// The turn's text ("" for none).
    pub fn text(&self) -> &str {
        self.content.as_deref().unwrap_or("")
    }
}

/// Extra variables for a template (transformers' `apply_chat_template(**kwargs)`).
pub type TemplateKwargs = serde_json::Map<String, serde_json::Value>;

/// Template variables that reasoning models' templates read, which a page may offer.
const SWITCHES: [&str; 2] = ["enable_thinking", "reasoning_effort"];

/// Variables a request may not set through its kwargs: the template's own inputs.
const RESERVED: [&str; 2] = ["messages", "add_generation_prompt"];

/// Formats used when a file has no template, chosen by the special tokens its vocabulary has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fallback {
    /// `<|im_start|>role\n...<|im_end|>\n`
    ChatMl,
    /// `<start_of_turn>user\n...<end_of_turn>\n`, with the system prompt folded into the first user turn.
    Gemma,
    /// `User: ...\nAssistant: ...` for base models without chat tokens.
    Plain,
}

pub struct ChatTemplate {
    env: Environment<'static>,
    has_template: bool,
    /// What the source says of itself, read once: see [`ChatTemplate::switches`] and
    /// [`ChatTemplate::tool_format`].
    switches: Vec<&'static str>,
    tool_format: Option<&'static str>,
    fallback: Fallback,
    bos: String,
    eos: String,
    /// Seconds since 1970 that `strftime_now` reads; 0 = the clock.
    fixed_time: Arc<AtomicI64>,
}

fn raise_exception(msg: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

impl ChatTemplate {
    pub fn new(source: Option<&str>, fallback: Fallback, bos: &str, eos: &str) -> Result<Self> {
        let mut env = Environment::new();
        // Templates are written for Python's Jinja as transformers (and llama.cpp) set it up:
        // its string methods (`.strip()`, `.startswith()`...), `trim_blocks` and
        // `lstrip_blocks` (a template's line breaks and indentation around `{% %}` are not
        // part of the prompt), `tojson` as `json.dumps`, `strftime_now` and
        // `raise_exception` (tests/chat_templates.rs checks 70 real templates against it).
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", pyjinja::tojson);
        env.add_filter("indent", pyjinja::indent);
        env.add_filter("string", pyjinja::string);
        env.set_formatter(pyjinja::format);
        env.add_test("iterable", pyjinja::is_iterable);
        let fixed_time = Arc::new(AtomicI64::new(0));
        let clock = fixed_time.clone();
        env.add_function("strftime_now", move |format: String| {
            let fixed = clock.load(Ordering::Relaxed);
            let now = if fixed != 0 { fixed } else { pyjinja::unix_now() };
            pyjinja::strftime(&format, now)
        });
        if let Some(src) = source {
            env.add_template_owned("chat", pyjinja::strip_generation_tags(src))
                .map_err(|e| Error::Template(format!("cannot parse the file's chat template: {e}")))?;
        }
        Ok(ChatTemplate {
            env,
            has_template: source.is_some(),
            switches: source.map_or(vec![], |s| SWITCHES.into_iter().filter(|k| s.contains(k)).collect()),
            tool_format: source.and_then(tool_format),
            fallback,
            bos: bos.into(),
            eos: eos.into(),
            fixed_time,
        })
    }

    /// Renders `strftime_now` at this time (seconds since 1970, UTC) instead of the clock's,
    /// so that a prompt can be reproduced.
    pub fn fix_time(&self, unix_seconds: i64) {
        self.fixed_time.store(unix_seconds, Ordering::Relaxed);
    }

    /// The switches a request can pass (`chat_template_kwargs`) that this template reads:
    /// a page offers "think first" only for a model whose template has the switch.
    pub fn switches(&self) -> &[&'static str] {
        &self.switches
    }

    /// How the model writes a function call, where its template offers tools itself (reads
    /// `tools`, renders calls and results): `hermes`, a JSON `{"name", "arguments"}` object in
    /// `<tool_call>` tags (Qwen 2.5/3, QwQ, Granite 4); `llama3`, a bare JSON
    /// `{"name", "parameters"}` object (Llama 3.1–3.3). None: the model gets the functions
    /// described in its system message instead (pkg/tools.js).
    pub fn tool_format(&self) -> Option<&'static str> {
        self.tool_format
    }

    pub fn has_template(&self) -> bool {
        self.has_template
    }

    pub fn fallback(&self) -> Fallback {
        self.fallback
    }

    /// The prompt for a conversation. A template that refuses system messages (Gemma 2's
    /// and Mistral Instruct's raise an error; the page always sends one) gets the system
    /// prompt folded into the first user message instead, after a blank line as Gemma 3's
    /// own template does it (llama.cpp's server folds it too, after one line break); if that
    /// does not render either, the template's own error is returned.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.render_with(messages, add_generation_prompt, &TemplateKwargs::new())
    }

    /// [`ChatTemplate::render`] with extra variables for the template (Qwen3's
    /// `enable_thinking`); they may override `bos_token`, `eos_token`, `tools` and
    /// `documents`. A file without a template has no switches: its fallback ignores them.
    pub fn render_with(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        kwargs: &TemplateKwargs,
    ) -> Result<String> {
        if let Some(k) = RESERVED.iter().find(|k| kwargs.contains_key(**k)) {
            return Err(Error::InvalidRequest(format!(
                "chat_template_kwargs may not set `{k}`: the request itself gives it"
            )));
        }
        if !self.has_template {
            return Ok(render_fallback(self.fallback, messages, add_generation_prompt));
        }
        let first = self.render_template(messages, add_generation_prompt, kwargs);
        if first.is_ok() {
            return first;
        }
        match fold_system(messages) {
            Some(folded) => self.render_template(&folded, add_generation_prompt, kwargs).or(first),
            None => first,
        }
    }

    fn render_template(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        kwargs: &TemplateKwargs,
    ) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Template(e.to_string()))?;
        // Later maps win: the request's variables over the kwargs over the defaults.
        let context = minijinja::value::merge_maps([
            minijinja::context! {
                bos_token => self.bos,
                eos_token => self.eos,
                // transformers passes both, as none, when a request has none: templates
                // test `tools is not none`.
                tools => Value::from(()),
                documents => Value::from(()),
            },
            Value::from_serialize(kwargs),
            minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
            },
        ]);
        tmpl.render(context)
            .map_err(|e| Error::Template(format!("rendering failed: {e}")))
    }
}

/// [`ChatTemplate::tool_format`], read from the template's source.
fn tool_format(source: &str) -> Option<&'static str> {
    if !source.contains("tools") {
        return None;
    }
    // The template's own instructions, with its string escapes read.
    let text = source.replace("\\n", "\n").replace("\\\"", "\"");
    if text.contains("<tool_call>\n{\"name\"") {
        Some("hermes")
    } else if (text.contains("<|python_tag|>") || text.contains("\"parameters\": dictionary"))
        && !text.contains("<function=")
    {
        Some("llama3")
    } else {
        None
    }
}

/// The conversation with its system messages joined into the first user message (a blank
/// line between), or `None` if there is nothing to fold.
fn fold_system(messages: &[Message]) -> Option<Vec<Message>> {
    let system: Vec<&str> = messages
        .iter()
        .filter(|m| m.role == "system")
        .map(Message::text)
        .collect();
    let first_user = messages.iter().position(|m| m.role == "user")?;
    if system.is_empty() {
        return None;
    }
    let mut folded: Vec<Message> = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        if m.role == "system" {
            continue;
        }
        let mut m = m.clone();
        if i == first_user {
            m.content = Some(format!("{}\n\n{}", system.join("\n\n"), m.text()));
        }
        folded.push(m);
    }
    Some(folded)
}

fn render_fallback(kind: Fallback, messages: &[Message], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    match kind {
        Fallback::ChatMl => {
            for m in messages {
                out += &format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.text());
            }
            if add_generation_prompt {
                out += "<|im_start|>assistant\n";
            }
        }
        Fallback::Gemma => {
            let mut system = String::new();
            for m in messages {
                match m.role.as_str() {
                    "system" => system = format!("{}\n\n", m.text()),
                    role => {
                        let role = if role == "assistant" { "model" } else { role };
                        out += &format!(
                            "<start_of_turn>{role}\n{}{}<end_of_turn>\n",
                            std::mem::take(&mut system),
                            m.text()
                        );
                    }
                }
            }
            if add_generation_prompt {
                out += "<start_of_turn>model\n";
            }
        }
        Fallback::Plain => {
            for m in messages {
                let role = match m.role.as_str() {
                    "system" => "System",
                    "assistant" => "Assistant",
                    _ => "User",
                };
                out += &format!("{role}: {}\n", m.text());
            }
            if add_generation_prompt {
                out += "Assistant:";
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'].strip() + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn content_is_a_string_none_or_text_parts() {
        let read = |j: &str| serde_json::from_str::<Message>(j);
        assert_eq!(
            read(r#"{"role": "user", "content": "Hi"}"#).unwrap(),
            Message::new("user", "Hi")
        );
        let parts =
            r#"{"role": "user", "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "two"}]}"#;
        assert_eq!(read(parts).unwrap(), Message::new("user", "One\ntwo"));
        let call = read(r#"{"role": "assistant", "content": null, "tool_calls": []}"#).unwrap();
        assert_eq!((call.content, call.extra.len()), (None, 1));
        assert_eq!(read(r#"{"role": "assistant"}"#).unwrap().content, None);
        let image = r#"{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}"#;
        assert!(read(image).unwrap_err().to_string().contains("only text parts"));
        assert!(read(r#"{"role": "user", "content": 5}"#).is_err());
    }

    #[test]
    fn renders_a_jinja_template_with_python_methods() {
        let t = ChatTemplate::new(Some(CHATML), Fallback::Plain, "<s>", "</s>").unwrap();
        let msgs = [Message::new("system", "Be brief."), Message::new("user", "  Hi  ")];
        assert_eq!(
            t.render(&msgs, true).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(!t.render(&msgs, false).unwrap().ends_with("assistant\n"));
    }

    #[test]
    fn raise_exception_becomes_an_error() {
        let src = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}";
        let t = ChatTemplate::new(Some(src), Fallback::Plain, "", "").unwrap();
        let err = t
            .render(&[Message::new("assistant", "x")], true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("first message must be from the user"), "{err}");
    }

    #[test]
    fn a_refused_system_prompt_is_folded_into_the_first_user_message() {
        let src = "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}[{{ m.role }}]{{ m.content }}{% endfor %}";
        let t = ChatTemplate::new(Some(src), Fallback::Plain, "", "").unwrap();
        let msgs = [
            Message::new("system", "S"),
            Message::new("user", "U"),
            Message::new("assistant", "A"),
            Message::new("user", "V"),
        ];
        assert_eq!(t.render(&msgs, true).unwrap(), "[user]S\n\nU[assistant]A[user]V");
        // Nothing to fold into: the template's own error.
        let err = t.render(&msgs[..1], true).unwrap_err().to_string();
        assert!(err.contains("System role not supported"), "{err}");
    }

    /// Expected strings from Python: `json.dumps(x, ensure_ascii=False)`, with `indent=2`,
    /// with `ensure_ascii=True`, with `sort_keys=True, separators=(',', ':')`.
    #[test]
    fn tojson_writes_what_pythons_json_dumps_writes() {
        let src = r#"{% set x = {'name': 'get_weather', 'b': [1, 2.5, none, true], 'html': "<b>&'</b>", 'u': 'é😀', 'e': {}, 'l': []} %}{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ x | tojson(ensure_ascii=true) }}|{{ x | tojson(sort_keys=true, separators=[',', ':']) }}"#;
        let t = ChatTemplate::new(Some(src), Fallback::Plain, "", "").unwrap();
        let got = t.render(&[], false).unwrap();
        let want = [
            r#"{"name": "get_weather", "b": [1, 2.5, null, true], "html": "<b>&'</b>", "u": "é😀", "e": {}, "l": []}"#,
            "{\n  \"name\": \"get_weather\",\n  \"b\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  \"html\": \"<b>&'</b>\",\n  \"u\": \"é😀\",\n  \"e\": {},\n  \"l\": []\n}",
            r#"{"name": "get_weather", "b": [1, 2.5, null, true], "html": "<b>&'</b>", "u": "\u00e9\ud83d\ude00", "e": {}, "l": []}"#,
            r#"{"b":[1,2.5,null,true],"e":{},"html":"<b>&'</b>","l":[],"name":"get_weather","u":"é😀"}"#,
        ];
        assert_eq!(got.split('|').collect::<Vec<_>>(), want);
    }

    #[test]
    fn fallbacks_are_used_without_a_template() {
        let msgs = [Message::new("system", "S"), Message::new("user", "U")];
        let g = ChatTemplate::new(None, Fallback::Gemma, "", "").unwrap();
        assert_eq!(
            g.render(&msgs, true).unwrap(),
            "<start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\n"
        );
        let p = ChatTemplate::new(None, Fallback::Plain, "", "").unwrap();
        assert_eq!(p.render(&msgs, true).unwrap(), "System: S\nUser: U\nAssistant:");
    }

    #[test]
    fn a_broken_template_is_a_clear_error() {
        let err = ChatTemplate::new(Some("{% for %}"), Fallback::Plain, "", "")
            .err()
            .unwrap();
        assert!(err.to_string().contains("chat template"));
    }
}
