//! Constrained decoding on the real test models: `extract` must return JSON that validates
//! against the caller's schema for every input (checked by an independent validator, the
//! `jsonschema` crate), and regex / choice constraints must hold on the raw output.

mod common;
use candlelit::constrain::Constraint;
use candlelit::engine::{Engine, FinishReason, Prompt, Request};
use candlelit::gguf::Loader;
use candlelit::recipes::{extract, summarize, SummaryLength, TaskOptions};
use candlelit::sample::SamplingParams;
use common::*;
use serde_json::{json, Value};

fn engine(name: &str) -> Engine {
    Engine::new(Loader::load_file(model_path(name)).unwrap(), Some(2048)).unwrap()
}

fn person() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 40},
            "age": {"type": "integer", "minimum": 0, "maximum": 130},
            "city": {"type": "string", "maxLength": 40}
        },
        "required": ["name", "age", "city"]
    })
}

fn event() -> Value {
    json!({
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 60},
            "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
            "attendees": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 6}
        },
        "required": ["title", "date", "attendees"]
    })
}

fn review() -> Value {
    json!({
        "type": "object",
        "properties": {
            "product": {"type": "string", "maxLength": 40},
            "rating": {"type": "integer", "minimum": 1, "maximum": 5},
            "sentiment": {"enum": ["positive", "negative", "mixed"]},
            "would_recommend": {"type": "boolean"}
        },
        "required": ["product", "rating", "sentiment", "would_recommend"]
    })
}

fn order() -> Value {
    json!({
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": 5,
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "maxLength": 30},
                        "quantity": {"type": "integer", "minimum": 1, "maximum": 100}
                    },
                    "required": ["name", "quantity"]
                }
            },
            "total": {"type": "number", "minimum": 0},
            "email": {"anyOf": [{"type": "string", "format": "email", "maxLength": 40}, {"type": "null"}]}
        },
        "required": ["items", "total", "email"]
    })
}

fn cases() -> Vec<(&'static str, Value)> {
    vec![
        ("Maria Lopez, 34, lives in Madrid and works as a nurse.", person()),
        (
            "Our new intern is Kenji Watanabe. He is 22 and grew up in Osaka.",
            person(),
        ),
        (
            "At 71, retired teacher Agnes Miller still cycles around Dublin every morning.",
            person(),
        ),
        ("Name: Tom Becker; Age: 45; Residence: Hamburg, Germany.", person()),
        (
            "Priya, a 29-year-old engineer from Bangalore, won the hackathon.",
            person(),
        ),
        (
            "The quarterly planning meeting is on 2025-03-14 with Alice, Bob and Chen.",
            event(),
        ),
        ("Reminder: Team offsite on 2024-11-02. Attending: Dana, Eli.", event()),
        (
            "Sophie's birthday party will be held on 2026-07-19; invited are Max, Lena and Jo.",
            event(),
        ),
        ("Launch review scheduled 2025-01-08, attendees Priya and Omar.", event()),
        (
            "Workshop 'Intro to Rust' on 2024-09-30, led by Ferris with Ana, Ben, Cleo.",
            event(),
        ),
        (
            "The AeroPress is fantastic, 5 stars, I'd recommend it to anyone who loves coffee.",
            review(),
        ),
        (
            "Bought the CloudSoft pillow. It flattened in a week. 1 star, avoid.",
            review(),
        ),
        (
            "The Nimbus 3 headphones sound great but the battery is weak. 3/5, maybe.",
            review(),
        ),
        (
            "Kindle Paperwhite: 4 stars. Easy on the eyes, a bit slow. Still recommended.",
            review(),
        ),
        (
            "Terrible blender (BlendMax 200): loud and leaked on day one. Rating 2.",
            review(),
        ),
        (
            "Please send 2 large pizzas and 3 cokes. Total $31.50. Contact: sam@example.com",
            order(),
        ),
        (
            "Order: 1 laptop stand, 2 USB-C cables; total 64.99; no email given.",
            order(),
        ),
        (
            "I'd like 10 blue pens and 4 notebooks, that's 23 euros, mail me at kim.lee@mail.org",
            order(),
        ),
        ("One coffee grinder please. 89 dollars. ana@shop.net", order()),
        (
            "3 croissants, 2 baguettes and 1 tart. Total 12.40. Email: none.",
            order(),
        ),
    ]
}

fn run_cases(model: &str) {
    let mut e = engine(model);
    let opts = TaskOptions {
        max_tokens: 300,
        ..Default::default()
    };
    let mut valid = 0;
    for (text, schema) in cases() {
        let validator = jsonschema::validator_for(&schema).unwrap();
        let out = extract(&mut e, text, &schema, &opts).unwrap_or_else(|err| panic!("{model}: {text}: {err}"));
        let errors: Vec<String> = validator.iter_errors(&out.value).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{model}: {text} -> {} invalid: {errors:?}",
            out.value
        );
        // The text handed back is exactly the JSON that was parsed.
        assert_eq!(serde_json::from_str::<Value>(&out.output.text).unwrap(), out.value);
        assert!(out.output.confidence > 0.0 && out.output.confidence <= 1.0);
        eprintln!(
            "{model}: {text}\n  -> {} (confidence {:.3})",
            out.value, out.output.confidence
        );
        valid += 1;
    }
    assert_eq!(valid, 20);
}

#[test]
fn extract_is_schema_valid_for_20_of_20_on_smollm2() {
    run_cases(SMOLLM2);
}

#[test]
fn extract_is_schema_valid_for_20_of_20_on_gemma3() {
    run_cases(GEMMA3);
}

#[test]
fn extract_finds_the_obvious_fields() {
    let mut e = engine(SMOLLM2);
    let out = extract(&mut e, cases()[0].0, &person(), &TaskOptions::default()).unwrap();
    assert_eq!(out.value["age"], json!(34), "{}", out.value);
    assert_eq!(out.value["city"], json!("Madrid"), "{}", out.value);
}

#[test]
fn without_the_constraint_the_same_prompt_is_not_valid_json() {
    // Shows the constraint is what makes extraction reliable: the free reply of the same
    // model to the same request does not validate (it is prose or partial JSON).
    let mut e = engine(SMOLLM2);
    let (text, schema) = &cases()[15];
    let prompt = Prompt::Text(format!(
        "Extract the order from this text as JSON following {schema}: {text}\nJSON:"
    ));
    let free = e
        .generate(
            &prompt,
            &Request {
                sampling: SamplingParams::greedy(),
                max_tokens: 80,
                ..Default::default()
            },
        )
        .unwrap();
    let validator = jsonschema::validator_for(schema).unwrap();
    let valid = serde_json::from_str::<Value>(free.text.trim()).map(|v| validator.is_valid(&v));
    assert!(!matches!(valid, Ok(true)), "unexpectedly valid: {}", free.text);
}

#[test]
fn regex_and_choices_hold_on_the_raw_output() {
    let mut e = engine(GEMMA3);
    let greedy = |c: Constraint| Request {
        sampling: SamplingParams::greedy(),
        max_tokens: 20,
        constraint: Some(c),
        ..Default::default()
    };
    let date = e
        .generate(
            &Prompt::Text("The storming of the Bastille happened on".into()),
            &greedy(Constraint::Regex {
                pattern: r" [0-9]{4}-[0-9]{2}-[0-9]{2}".into(),
            }),
        )
        .unwrap();
    assert_eq!(date.reason, Some(FinishReason::Stop));
    let re = regex_lite_match(&date.text);
    assert!(re, "{:?}", date.text);

    let choices = vec![" Paris".to_string(), " Lyon".to_string(), " Marseille".to_string()];
    let pick = e
        .generate(
            &Prompt::Text("The capital of France is".into()),
            &greedy(Constraint::Choices {
                choices: choices.clone(),
            }),
        )
        .unwrap();
    assert_eq!(pick.text, " Paris");
    // With sampling at a high temperature every answer is still one of the choices.
    for seed in 0..5 {
        let r = e
            .generate(
                &Prompt::Text("My favourite city is".into()),
                &Request {
                    sampling: SamplingParams {
                        temperature: 1.5,
                        seed: Some(seed),
                        ..SamplingParams::default()
                    },
                    max_tokens: 20,
                    constraint: Some(Constraint::Choices {
                        choices: choices.clone(),
                    }),
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(choices.contains(&r.text), "{:?}", r.text);
    }
}

/// ` dddd-dd-dd` without pulling in a regex crate for one pattern.
fn regex_lite_match(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 11
        && b[0] == b' '
        && b[5] == b'-'
        && b[8] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 0 | 5 | 8) || c.is_ascii_digit())
}

#[test]
fn bad_constraints_are_clear_errors() {
    let mut e = engine(SMOLLM2);
    let mut req = Request {
        constraint: Some(Constraint::Regex {
            pattern: "(unclosed".into(),
        }),
        ..Default::default()
    };
    let err = e.start(&Prompt::Text("x".into()), &req).unwrap_err();
    assert_eq!(err.code(), "Constraint", "{err}");
    req.constraint = Some(Constraint::Choices { choices: vec![] });
    assert_eq!(
        e.start(&Prompt::Text("x".into()), &req).unwrap_err().code(),
        "Constraint"
    );
    req.constraint = Some(Constraint::JsonSchema { schema: json!(42) });
    assert_eq!(
        e.start(&Prompt::Text("x".into()), &req).unwrap_err().code(),
        "Constraint"
    );
    let err = extract(&mut e, "x", &json!("not a schema"), &TaskOptions::default()).unwrap_err();
    assert_eq!(err.code(), "InvalidRequest");
    // The engine still works afterwards.
    assert!(!e
        .generate(
            &Prompt::Text("Hello".into()),
            &Request {
                max_tokens: 3,
                ..Default::default()
            }
        )
        .unwrap()
        .tokens
        .is_empty());
}

#[test]
fn summaries_have_the_asked_shape() {
    let mut e = engine(SMOLLM2);
    let text = "The city council met on Monday to discuss the new bus lanes. Shop owners worried about \
                deliveries, cyclists asked for protected lanes, and the mayor promised a trial on two \
                streets next spring, with a public survey after three months.";
    let out = summarize(&mut e, text, SummaryLength::Points(3), &TaskOptions::default()).unwrap();
    let lines: Vec<&str> = out.text.lines().collect();
    assert_eq!(lines.len(), 3, "{:?}", out.text);
    assert!(
        lines.iter().all(|l| l.starts_with("- ") && l.len() > 3),
        "{:?}",
        out.text
    );
    let out = summarize(&mut e, text, SummaryLength::MaxWords(12), &TaskOptions::default()).unwrap();
    let words = out.text.split_whitespace().count();
    assert!((1..=12).contains(&words), "{words} words: {:?}", out.text);
}

#[test]
fn reasoning_and_persona_shape_the_conversation() {
    use candlelit::recipes::translate;
    let mut e = engine(SMOLLM2);
    let opts = TaskOptions {
        reasoning: true,
        persona: Some("a meticulous data clerk".into()),
        max_tokens: 120,
        ..Default::default()
    };
    let (text, schema) = &cases()[0];
    let out = extract(&mut e, text, schema, &opts).unwrap();
    let reasoning = out.output.reasoning.clone().expect("reasoning requested");
    assert!(!reasoning.trim().is_empty());
    assert!(
        jsonschema::validator_for(schema).unwrap().is_valid(&out.value),
        "{}",
        out.value
    );
    // The cache holds the conversation the answer was generated from: persona in the
    // system turn, the model's own reasoning as an earlier assistant turn.
    let seen = e.tokenizer.decode(e.cache().tokens(), true);
    assert!(seen.contains("You are a meticulous data clerk."), "{seen}");
    assert!(seen.contains(reasoning.trim()), "{seen}");
    assert!(seen.contains("step by step"), "{seen}");

    // Few-shot examples become earlier turns too.
    let fr = TaskOptions {
        examples: vec![("Thank you very much.".into(), "Merci beaucoup.".into())],
        ..Default::default()
    };
    let out = translate(&mut e, "Good night.", None, "French", &fr).unwrap();
    let seen = e.tokenizer.decode(e.cache().tokens(), true);
    assert!(seen.contains("Merci beaucoup."), "{seen}");
    assert!(!out.text.is_empty() && out.confidence > 0.0);
    eprintln!(
        "translate with one example: {:?} (confidence {})",
        out.text, out.confidence
    );
}
