//! Real chat templates render as transformers renders them. The reference is Python's Jinja
//! in transformers' setup (`scripts/make_template_fixtures.py`, its prompts' SHA-256 in
//! tests/fixtures/chat-templates.transformers.json); the templates are the 70 of llama.cpp's
//! collection (Llama 3.x, Qwen 2.5/3, Phi-3.5, Gemma, Mistral, DeepSeek, Granite, …, fetched
//! by scripts/fetch_models.py) and SmolLM2's own.

mod common;

use candlelit::gguf::Loader;
use candlelit::tokenizer::{ChatTemplate, Fallback, Message, TemplateKwargs};
use common::{model_path, root, template};
use sha2::{Digest, Sha256};

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn template_source(name: &str) -> String {
    if let Some(model) = name.strip_prefix("gguf:") {
        let model = model.trim_end_matches(".gguf");
        let gguf = Loader::load_file(model_path(model)).expect("load the test model");
        return gguf
            .metadata
            .str("tokenizer.chat_template")
            .expect("metadata")
            .expect("the model has a chat template")
            .to_string();
    }
    template(name)
}

#[test]
fn real_chat_templates_render_as_transformers_renders_them() {
    let path = root().join("tests/fixtures/chat-templates.transformers.json");
    let fixture: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("fixture json");
    // (messages, add_generation_prompt, the tools offered)
    let conversations: Vec<(Vec<Message>, bool, Option<serde_json::Value>)> = fixture["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .map(|c| {
            let messages = serde_json::from_value(c["messages"].clone()).expect("messages");
            let generation = c["add_generation_prompt"].as_bool().expect("flag");
            (messages, generation, c.get("tools").cloned())
        })
        .collect();
    let bos = fixture["bos_token"].as_str().expect("bos");
    let eos = fixture["eos_token"].as_str().expect("eos");
    let fixed_time = fixture["fixed_time"].as_i64().expect("time");
    let templates = fixture["templates"].as_object().expect("templates");
    assert!(templates.len() >= 70, "{} templates", templates.len());

    let dump = std::env::var_os("CANDLELIT_TEMPLATE_DUMP").map(std::path::PathBuf::from);
    let (mut compared, mut raised, mut lenient, mut folded_in, mut with_kwargs) = (0, 0, 0, 0, 0);
    let mut markup = 0;
    let mut failures = Vec::new();
    for (name, expected) in templates {
        let source = template_source(name);
        assert_eq!(
            sha256(source.as_bytes()),
            expected["sha256"],
            "{name} is not the fixture's"
        );
        let template = match ChatTemplate::new(Some(&source), Fallback::Plain, bos, eos) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        template.fix_time(fixed_time);
        // The plain renders, then those with each switch the template names
        // (`enable_thinking`, `reasoning_effort`) passed as chat_template_kwargs.
        let mut runs = vec![(TemplateKwargs::new(), expected["renders"].clone())];
        for w in expected
            .get("with_kwargs")
            .and_then(|w| w.as_array())
            .into_iter()
            .flatten()
        {
            let kwargs = w["kwargs"].as_object().expect("kwargs").clone();
            runs.push((kwargs, w["renders"].clone()));
        }
        for ((messages, generation, tools), want, i, kwargs) in runs.iter().flat_map(|(kwargs, renders)| {
            let renders = renders.as_array().expect("renders");
            conversations
                .iter()
                .zip(renders)
                .enumerate()
                .map(move |(i, (c, want))| (c, want, i, kwargs))
        }) {
            compared += 1;
            if !kwargs.is_empty() {
                with_kwargs += 1;
            }
            let name = if kwargs.is_empty() {
                name.clone()
            } else {
                format!("{name} {}", serde_json::Value::Object(kwargs.clone()))
            };
            // transformers' `tools=` argument, which the request's kwargs carry here.
            let mut kwargs = kwargs.clone();
            if let Some(t) = tools {
                kwargs.insert("tools".into(), t.clone());
            }
            let got = template.render_with(messages, *generation, &kwargs);
            if let (Some(dir), Ok(text)) = (&dump, &got) {
                std::fs::create_dir_all(dir).expect("dump dir");
                std::fs::write(dir.join(format!("{name}.{i}.txt")), text).expect("dump");
            }
            // Where the template refuses a system message, the engine renders the
            // conversation with the system prompt folded into the first user message.
            let want = match want.get("folded") {
                Some(folded) if folded.get("error").is_none() => {
                    folded_in += 1;
                    folded
                }
                _ => want,
            };
            match (got, want.get("error")) {
                // The template itself refused the conversation (e.g. Gemma 2 has no system
                // role): the engine must refuse it too, not invent a prompt.
                (Err(_), Some(_)) => raised += 1,
                (Ok(text), None) if sha256(text.as_bytes()) == want["sha256"] => {}
                // Functionary v3.1 writes `"…"|safe + tool|tojson`: Python's Markup escapes the
                // JSON it is added to (`{&#34;name&#34;: …}`, which no model was trained on);
                // minijinja has no Markup arithmetic and gives the JSON as written.
                (Ok(_), None) if name.starts_with("meetkai-functionary-medium-v3.1.jinja") && tools.is_some() => {
                    markup += 1
                }
                (Ok(text), None) => failures.push(format!(
                    "{name} conversation {i}: {} chars, transformers {}",
                    text.chars().count(),
                    want["chars"]
                )),
                // minijinja loops over `none` as over nothing, where Python raises: the tool-use
                // variants of Hermes' and Command R+'s templates (made for requests with
                // tools) then render an empty tool list instead of failing.
                (Ok(_), Some(e)) if e.as_str() == Some("TypeError: 'NoneType' object is not iterable") => lenient += 1,
                // llama.cpp's own DeepSeek R1 template (written for its C++ Jinja) hands
                // `json.dumps` a generator in Python; minijinja renders the tools.
                (Ok(_), Some(e))
                    if e.as_str() == Some("TypeError: Object of type generator is not JSON serializable") =>
                {
                    lenient += 1
                }
                (Ok(_), Some(e)) => {
                    failures.push(format!("{name} conversation {i}: rendered, transformers raised {e}"))
                }
                (Err(e), None) => failures.push(format!("{name} conversation {i}: {e}")),
            }
        }
    }
    println!(
        "{} templates, {compared} prompts ({with_kwargs} with chat_template_kwargs): {} equal \
         ({folded_in} with the system prompt folded into the first user message), {raised} \
         refused as transformers refuses them, {lenient} rendered where Python fails (a loop \
         over none, a generator to json.dumps), {markup} with tool JSON where Python's Markup \
         escapes it",
        templates.len(),
        compared - raised - lenient - markup - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Which templates offer tools in a format the client decodes natively: the families whose
/// calls are JSON in `<tool_call>` tags or bare JSON; the others (XML-style calls, no tools)
/// get the functions described in the system message.
#[test]
fn tool_formats_are_recognised() {
    let format = |name: &str| {
        ChatTemplate::new(Some(&template_source(name)), Fallback::Plain, "<s>", "</s>")
            .expect("template")
            .tool_format()
    };
    assert_eq!(format("Qwen-Qwen2.5-7B-Instruct.jinja"), Some("hermes"));
    assert_eq!(format("Qwen-Qwen3-0.6B.jinja"), Some("hermes"));
    assert_eq!(format("ibm-granite-granite-4.0.jinja"), Some("hermes"));
    assert_eq!(format("meta-llama-Llama-3.1-8B-Instruct.jinja"), Some("llama3"));
    assert_eq!(format("meta-llama-Llama-3.2-3B-Instruct.jinja"), Some("llama3"));
    assert_eq!(format("Qwen3-Coder.jinja"), None); // <function=…> XML calls
    assert_eq!(format("meetkai-functionary-medium-v3.1.jinja"), None);
    assert_eq!(format("GLM-4.6.jinja"), None);
    assert_eq!(format("google-gemma-2-2b-it.jinja"), None);
    assert_eq!(format("gguf:smollm2-135m-instruct-q4_1.gguf"), None);
}
