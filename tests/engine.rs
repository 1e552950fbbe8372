//! The engine on the real test models: answers, multi-turn cache reuse, sampling,
//! stop strings, cancellation and context limits.

mod common;
use candlelit::constrain::Constraint;
use candlelit::engine::{Engine, FinishReason, Prompt, Request, Step, Truncation};
use candlelit::gguf::Loader;
use candlelit::sample::SamplingParams;
use candlelit::tokenizer::Message;
use candlelit::Error;
use common::*;

fn engine(name: &str) -> Engine {
    Engine::new(Loader::load_file(model_path(name)).unwrap(), Some(1024)).unwrap()
}

fn greedy(max_tokens: usize) -> Request {
    Request {
        sampling: SamplingParams::greedy(),
        max_tokens,
        stop: vec![],
        ignore_eos: false,
        constraint: None,
        truncation: Truncation::Disabled,
        ..Request::default()
    }
}

fn chat(msgs: &[(&str, &str)]) -> Prompt {
    Prompt::Chat(msgs.iter().map(|(r, c)| Message::new(r, c)).collect())
}

#[test]
fn smollm2_names_paris_through_its_chat_template() {
    let mut e = engine(SMOLLM2);
    assert!(e.template.has_template());
    let g = e
        .generate(
            &chat(&[
                ("system", "You are a helpful assistant."),
                ("user", "What is the capital of France?"),
            ]),
            &greedy(40),
        )
        .unwrap();
    println!("SmolLM2: {:?} {:?}", g.text, g.stats);
    assert!(g.text.contains("Paris"), "{:?}", g.text);
    assert_eq!(
        g.reason,
        Some(FinishReason::Stop),
        "the reply should end with <|im_end|>"
    );
    assert!(!g.text.contains("<|im_end|>"));
}

#[test]
fn gemma3_completes_with_paris() {
    // The base model's greedy continuation of the bare sentence is " the capital of the
    // country of France." (llama.cpp's too, see the fixture); " Paris" is its third choice.
    // So: Paris must carry real probability as the next token, and a one-shot prompt must
    // complete greedily with it.
    let mut e = engine(GEMMA3);
    let paris = e.tokenizer.encode(" Paris", false, false).unwrap();
    assert_eq!(paris.len(), 1);
    let req = Request {
        sampling: SamplingParams {
            top_logprobs: 5,
            ..SamplingParams::greedy()
        },
        max_tokens: 1,
        stop: vec![],
        ignore_eos: false,
        constraint: None,
        truncation: Truncation::Disabled,
        ..Request::default()
    };
    e.start(&Prompt::Text("The capital of France is".into()), &req).unwrap();
    let top = loop {
        if let Step::Token { top_logprobs, .. } = e.step().unwrap() {
            break top_logprobs;
        }
    };
    let p = top.iter().find(|(id, _)| *id == paris[0]).map(|(_, l)| l.exp());
    println!("P(' Paris' | 'The capital of France is') = {p:?}; top-5 {top:?}");
    assert!(
        p.is_some_and(|p| p > 0.05) && top[..3].iter().any(|(id, _)| *id == paris[0]),
        "{top:?}"
    );

    let g = e
        .generate(
            &Prompt::Text("The capital of Germany is Berlin. The capital of France is".into()),
            &greedy(4),
        )
        .unwrap();
    println!("Gemma 3: {:?}", g.text);
    assert!(g.text.trim_start().starts_with("Paris"), "{:?}", g.text);
}

#[test]
fn second_turn_reuses_the_cache_and_matches_a_fresh_run() {
    let mut e = engine(SMOLLM2);
    let mut msgs = vec![
        ("system", "You are a helpful assistant."),
        ("user", "What is the capital of France?"),
    ];
    let first = e.generate(&chat(&msgs), &greedy(30)).unwrap();
    msgs.push(("assistant", &first.text));
    msgs.push(("user", "And what is the capital of Germany?"));
    let second = e.generate(&chat(&msgs), &greedy(30)).unwrap();
    let s = &second.stats;
    println!("turn 2: {s:?} -> {:?}", second.text);
    assert!(
        s.cached_tokens > first.stats.prompt_tokens,
        "cached {} of {}",
        s.cached_tokens,
        s.prompt_tokens
    );
    assert_eq!(s.prefill_tokens, s.prompt_tokens - s.cached_tokens);
    assert!(
        s.prefill_tokens < 30,
        "only the new turn should be prefilled, got {}",
        s.prefill_tokens
    );

    let mut fresh = engine(SMOLLM2);
    let again = fresh.generate(&chat(&msgs), &greedy(30)).unwrap();
    assert_eq!(again.stats.cached_tokens, 0);
    assert_eq!(again.tokens, second.tokens, "cached and fresh runs differ");
}

#[test]
fn same_seed_same_text_and_different_seeds_differ() {
    let mut e = engine(SMOLLM2);
    let req = |seed| Request {
        sampling: SamplingParams {
            temperature: 1.0,
            seed: Some(seed),
            ..Default::default()
        },
        max_tokens: 24,
        stop: vec![],
        ignore_eos: false,
        constraint: None,
        truncation: Truncation::Disabled,
        ..Request::default()
    };
    let p = Prompt::Text("Once upon a time".into());
    let a = e.generate(&p, &req(42)).unwrap();
    let b = e.generate(&p, &req(42)).unwrap();
    assert_eq!(a.tokens, b.tokens);
    let others: Vec<_> = (1..4).map(|s| e.generate(&p, &req(s)).unwrap().tokens).collect();
    assert!(others.iter().any(|t| *t != a.tokens), "seeds 1..3 all equal seed 42");
}

#[test]
fn stop_strings_end_the_reply_and_are_not_emitted() {
    let mut e = engine(GEMMA3);
    let p = Prompt::Text("The capital of France is".into());
    let full = e.generate(&p, &greedy(12)).unwrap();
    // Stop on a word that greedy decoding produces, spanning a token boundary.
    assert!(full.text.contains("country of"), "{:?}", full.text);
    let req = Request {
        stop: vec!["try of".into()],
        ..greedy(12)
    };
    let g = e.generate(&p, &req).unwrap();
    assert_eq!(g.reason, Some(FinishReason::Stop));
    let expected = &full.text[..full.text.find("try of").unwrap()];
    assert_eq!(g.text, expected);
}

#[test]
fn max_tokens_and_logprobs() {
    let mut e = engine(SMOLLM2);
    let req = Request {
        sampling: SamplingParams {
            top_logprobs: 3,
            ..SamplingParams::greedy()
        },
        max_tokens: 5,
        stop: vec![],
        ignore_eos: false,
        constraint: None,
        truncation: Truncation::Disabled,
        ..Request::default()
    };
    e.start(&Prompt::Text("One, two, three,".into()), &req).unwrap();
    let mut n = 0;
    loop {
        match e.step().unwrap() {
            Step::Token {
                id,
                logprob,
                top_logprobs,
                ..
            } => {
                n += 1;
                assert_eq!(top_logprobs.len(), 3);
                assert_eq!(top_logprobs[0].0, id, "greedy picks the most likely token");
                assert!((top_logprobs[0].1 - logprob).abs() < 1e-5 && logprob <= 0.0);
                assert!(top_logprobs.windows(2).all(|w| w[0].1 >= w[1].1));
            }
            Step::Done { reason, stats, .. } => {
                assert_eq!(reason, FinishReason::Length);
                assert_eq!(stats.generated_tokens, 5);
                break;
            }
            Step::Prefill { .. } => {}
        }
    }
    assert_eq!(n, 5);
}

#[test]
fn cancel_between_tokens_keeps_the_engine_usable() {
    let mut e = engine(SMOLLM2);
    e.start(
        &chat(&[("user", "Write a long story about a dragon who learns to sing.")]),
        &greedy(200),
    )
    .unwrap();
    let mut tokens = 0;
    while tokens < 3 {
        match e.step().unwrap() {
            Step::Token { .. } => tokens += 1,
            Step::Done { .. } => panic!("the story ended after {tokens} tokens"),
            Step::Prefill { .. } => {}
        }
    }
    match e.cancel() {
        Some(Step::Done { reason, stats, .. }) => {
            assert_eq!(reason, FinishReason::Cancelled);
            assert_eq!(stats.generated_tokens, 3);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(e.step(), Err(Error::InvalidRequest(_))));
    let g = e
        .generate(
            &chat(&[
                ("system", "You are a helpful assistant."),
                ("user", "What is the capital of France?"),
            ]),
            &greedy(20),
        )
        .unwrap();
    assert!(g.text.contains("Paris"));
}

#[test]
fn context_overflow_is_an_error_and_a_full_context_ends_the_reply() {
    let mut e = Engine::new(Loader::load_file(model_path(SMOLLM2)).unwrap(), Some(32)).unwrap();
    let long = Prompt::Text("word ".repeat(40));
    match e.start(&long, &greedy(4)) {
        Err(Error::ContextOverflow { needed, limit }) => assert!(needed > limit && limit == 32),
        other => panic!("{other:?}"),
    }
    let g = e.generate(&Prompt::Text("word ".repeat(20)), &greedy(100)).unwrap();
    assert_eq!(g.reason, Some(FinishReason::ContextFull));
    assert!(g.stats.prompt_tokens + g.stats.generated_tokens <= 33);
}

#[test]
fn gemma_sliding_window_past_512_positions_stays_coherent() {
    // Positions beyond the 512-token window exercise the local layers' masking.
    let mut e = Engine::new(Loader::load_file(model_path(GEMMA3)).unwrap(), Some(1024)).unwrap();
    let filler = "The sky is blue. The grass is green. ".repeat(60);
    let p = Prompt::Text(format!(
        "{filler}\nQuestion: What is the capital of France?\nAnswer: The capital of France is"
    ));
    let g = e.generate(&p, &greedy(6)).unwrap();
    assert!(
        g.stats.prompt_tokens > 600,
        "prompt of {} tokens",
        g.stats.prompt_tokens
    );
    assert!(g.text.contains("Paris"), "{:?}", g.text);
}

#[test]
fn a_chat_longer_than_the_context_leaves_out_its_oldest_turns() {
    for name in [SMOLLM2, GEMMA3] {
        let mut e = Engine::new(Loader::load_file(model_path(name)).unwrap(), Some(256)).unwrap();
        let mut msgs = vec![Message::new("system", "You are a helpful assistant.")];
        for i in 0..10 {
            msgs.push(Message::new(
                "user",
                &format!("Tell me fact number {i} about the weather in spring."),
            ));
            msgs.push(Message::new(
                "assistant",
                &format!("Fact {i}: spring brings rain showers, mild winds and longer days."),
            ));
        }
        msgs.push(Message::new("user", "What is the capital of France?"));
        let max_tokens = 24;
        match e.start(&Prompt::Chat(msgs.clone()), &greedy(max_tokens)) {
            Err(Error::ContextOverflow { needed, limit }) => assert!(needed > limit && limit == 256),
            other => panic!("{name}: without truncation: {other:?}"),
        }
        let auto = Request {
            truncation: Truncation::Auto,
            ..greedy(max_tokens)
        };
        let first = e.generate(&Prompt::Chat(msgs.clone()), &auto).unwrap();
        let s = &first.stats;
        println!("{name}: {s:?} -> {:?}", first.text);
        assert!(s.dropped_messages >= 2 && s.dropped_messages.is_multiple_of(2), "{s:?}");
        assert!(s.prompt_tokens + max_tokens <= 256, "{s:?}");
        if name == SMOLLM2 {
            assert!(first.text.contains("Paris"), "{:?}", first.text);
        }
        // Exactly a conversation without the left-out turns.
        let kept: Vec<Message> = msgs[..1]
            .iter()
            .chain(&msgs[1 + s.dropped_messages..])
            .cloned()
            .collect();
        let mut fresh = Engine::new(Loader::load_file(model_path(name)).unwrap(), Some(256)).unwrap();
        let again = fresh.generate(&Prompt::Chat(kept), &greedy(max_tokens)).unwrap();
        assert_eq!(
            (again.stats.prompt_tokens, &again.tokens),
            (s.prompt_tokens, &first.tokens)
        );

        // The next turn keeps the same cut, so the cache still holds its prompt.
        msgs.push(Message::new("assistant", &first.text));
        msgs.push(Message::new("user", "And the capital of Germany?"));
        let second = e.generate(&Prompt::Chat(msgs.clone()), &auto).unwrap();
        println!("{name}: {:?} -> {:?}", second.stats, second.text);
        assert_eq!(second.stats.dropped_messages, s.dropped_messages);
        assert!(second.stats.cached_tokens >= s.prompt_tokens, "{:?}", second.stats);
    }
}

/// A reasoning model's `<think>…</think>` comes out apart from its answer, token by token as
/// it streams. SmolLM2 does not think on its own: a regex makes it write a thought first.
#[test]
fn a_chat_replys_thinking_comes_apart_from_its_answer() {
    let mut e = engine(SMOLLM2);
    let prompt = chat(&[("user", "What is the capital of France?")]);
    let req = Request {
        constraint: Some(Constraint::Regex {
            pattern: r"<think>[A-Za-z ,]{10,60}</think>\n\n[A-Z][a-z]+( [a-z]+){0,6}\.".into(),
        }),
        ..greedy(60)
    };
    e.start(&prompt, &req).unwrap();
    let (mut reasoning, mut text, mut steps) = (vec![], String::new(), 0);
    loop {
        match e.step().unwrap() {
            Step::Prefill { .. } => {}
            Step::Token {
                text: t, reasoning: r, ..
            } => {
                steps += 1;
                if !r.is_empty() {
                    reasoning.push((steps, r));
                }
                text += &t;
            }
            Step::Done {
                text: t, reasoning: r, ..
            } => {
                text += &t;
                if !r.is_empty() {
                    reasoning.push((steps + 1, r));
                }
                break;
            }
        }
    }
    let thought: String = reasoning.iter().map(|(_, r)| r.as_str()).collect();
    println!("thinking {thought:?} over {} steps, answer {text:?}", reasoning.len());
    assert!(thought.len() >= 10 && !thought.contains("think>"), "{thought:?}");
    assert!(reasoning.len() > 2, "the thinking should stream, not come at the end");
    assert!(!text.contains("think>") && !text.starts_with('\n'), "{text:?}");
    assert!(text.ends_with('.'), "{text:?}");

    // Unsplit, the same tokens give the tags and both parts in one text.
    let whole = e
        .generate(
            &prompt,
            &Request {
                separate_reasoning: false,
                ..req.clone()
            },
        )
        .unwrap();
    assert_eq!(whole.text, format!("<think>{thought}</think>\n\n{text}"));
    assert!(whole.reasoning.is_empty());
    // A raw-text prompt is never split.
    let raw = e.generate(&Prompt::Text("<think>".into()), &req).unwrap();
    assert!(raw.reasoning.is_empty() && raw.text.contains("</think>"), "{raw:?}");
}

/// chat_template_kwargs reach the template (their rendering is compared with transformers'
/// in tests/chat_templates.rs); the template's own inputs cannot be overridden through them.
#[test]
fn chat_template_kwargs_may_not_replace_the_conversation() {
    let mut e = engine(SMOLLM2);
    let mut kwargs = candlelit::tokenizer::TemplateKwargs::new();
    kwargs.insert("enable_thinking".into(), false.into());
    let ok = e.generate(
        &chat(&[("user", "Hi")]),
        &Request {
            chat_template_kwargs: kwargs.clone(),
            ..greedy(2)
        },
    );
    assert!(ok.is_ok(), "{ok:?}");
    kwargs.insert("messages".into(), serde_json::json!([]));
    let err = e
        .generate(
            &chat(&[("user", "Hi")]),
            &Request {
                chat_template_kwargs: kwargs,
                ..greedy(2)
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidRequest(_)) && err.to_string().contains("messages"),
        "{err}"
    );
}

/// A template that opens the thinking in the prompt (QwQ's with `enable_thinking`, DeepSeek
/// R1's) has the reply start inside it: everything before `</think>` is thinking.
#[test]
fn a_prompt_that_opens_the_thinking_starts_the_reply_inside_it() {
    let mut e = engine(SMOLLM2);
    e.set_chat_template(&template("Qwen-QwQ-32B.jinja")).unwrap();
    let mut kwargs = candlelit::tokenizer::TemplateKwargs::new();
    kwargs.insert("enable_thinking".into(), true.into());
    let req = Request {
        constraint: Some(Constraint::Regex {
            pattern: r"[A-Za-z ,]{10,60}</think>\n\n[A-Z][a-z]+( [a-z]+){0,6}\.".into(),
        }),
        chat_template_kwargs: kwargs,
        ..greedy(60)
    };
    let g = e
        .generate(&chat(&[("user", "What is the capital of France?")]), &req)
        .unwrap();
    println!("{g:?}");
    assert!(
        g.reasoning.len() >= 10 && !g.reasoning.contains("think>"),
        "{:?}",
        g.reasoning
    );
    assert!(g.text.ends_with('.') && !g.text.contains("think>"), "{:?}", g.text);
    // Without the switch this template closes the thinking itself: the reply is all answer.
    let closed = e
        .generate(
            &chat(&[("user", "What is the capital of France?")]),
            &Request {
                chat_template_kwargs: Default::default(),
                constraint: Some(Constraint::Regex {
                    pattern: r"[A-Z][a-z]+( [a-z]+){0,6}\.".into(),
                }),
                ..req
            },
        )
        .unwrap();
    assert!(closed.reasoning.is_empty() && !closed.text.is_empty(), "{closed:?}");
}
