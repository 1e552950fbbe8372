//! Native command line: generate, chat, tokenize, bench.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    if let Err(e) = cli::run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod eval {
    //! `candlelit eval`: accuracy and expected calibration error of the classify recipe.

    use candlelit::engine::Engine;
    use candlelit::recipes::{classify, ClassifyOptions};
    use candlelit::{Error, Result};
    use std::path::Path;

    /// Labels, instruction and few-shot examples of an evaluation task.
    struct Task {
        labels: Vec<String>,
        instruction: String,
        examples: Vec<(String, String)>,
    }

    fn task(name: &str) -> Result<Task> {
        let ex = |t: &str, l: &str| (t.to_string(), l.to_string());
        Ok(match name {
            "sentiment" => Task {
                labels: ["Positive", "Negative", "Neutral"].map(String::from).to_vec(),
                instruction: "What is the sentiment of the text? Answer with one word: Positive, Negative or Neutral."
                    .into(),
                examples: vec![
                    ex("The staff were friendly and the room was spotless.", "Positive"),
                    ex("The package arrived broken and support never answered.", "Negative"),
                    ex("The meeting is scheduled for Tuesday at 10 am.", "Neutral"),
                    ex("What a fantastic evening, the band was superb.", "Positive"),
                ],
            },
            "topic" => Task {
                labels: ["sports", "politics", "science", "business"].map(String::from).to_vec(),
                instruction:
                    "What is the topic of the news headline? Answer with one word: sports, politics, science or business."
                        .into(),
                examples: vec![
                    ex("Striker scores twice as United win the derby", "sports"),
                    ex("Parliament passes the new budget after a long debate", "politics"),
                    ex("Astronomers find a new moon orbiting Saturn", "science"),
                    ex("Shares of the airline jump after strong bookings", "business"),
                ],
            },
            other => {
                return Err(Error::InvalidRequest(format!(
                    "unknown task `{other}` (sentiment, topic)"
                )))
            }
        })
    }

    /// Expected calibration error over 10 equal-width confidence bins.
    fn ece(conf_correct: &[(f32, bool)]) -> f64 {
        let mut bins = [(0usize, 0f64, 0usize); 10];
        for &(c, ok) in conf_correct {
            let b = ((c * 10.0) as usize).min(9);
            bins[b].0 += 1;
            bins[b].1 += c as f64;
            bins[b].2 += ok as usize;
        }
        let n = conf_correct.len() as f64;
        bins.iter()
            .filter(|b| b.0 > 0)
            .map(|&(k, conf, ok)| (k as f64 / n) * (ok as f64 / k as f64 - conf / k as f64).abs())
            .sum()
    }

    pub fn run(engine: &mut Engine, data: &Path, task_name: &str, model: &Path) -> Result<()> {
        let Task {
            labels,
            instruction,
            examples,
        } = task(task_name)?;
        let rows: Vec<(String, String)> = std::fs::read_to_string(data)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).map_err(|e| Error::InvalidRequest(e.to_string()))?;
                Ok((
                    v["text"].as_str().unwrap_or_default().to_string(),
                    v["label"].as_str().unwrap_or_default().to_string(),
                ))
            })
            .collect::<Result<_>>()?;
        let zero = ClassifyOptions {
            instruction: Some(instruction.clone()),
            examples: vec![],
            calibrate: false,
        };
        let few = ClassifyOptions {
            instruction: Some(instruction),
            examples,
            calibrate: false,
        };
        // Contextual calibration: the label prior for the content-free input, computed once.
        let prior: Vec<f32> = classify(engine, "N/A", &labels, &few)?
            .iter()
            .map(|l| l.probability)
            .collect();
        let mut results: [Vec<(f32, bool)>; 3] = Default::default();
        // One setup at a time over all texts, so the shared prompt prefix (instruction and
        // examples) stays in the KV cache from one text to the next.
        for (i, opts) in [&zero, &few].into_iter().enumerate() {
            for (text, gold) in &rows {
                let probs: Vec<f32> = classify(engine, text, &labels, opts)?
                    .iter()
                    .map(|l| l.probability)
                    .collect();
                let mut variants = vec![(i, probs.clone())];
                if i == 1 {
                    let mut cal: Vec<f32> = probs.iter().zip(&prior).map(|(p, q)| p / q.max(1e-12)).collect();
                    let total: f32 = cal.iter().sum();
                    cal.iter_mut().for_each(|p| *p /= total);
                    variants.push((2, cal));
                }
                for (slot, p) in variants {
                    let (best, conf) = p
                        .iter()
                        .enumerate()
                        .fold((0, 0f32), |a, (j, &v)| if v > a.1 { (j, v) } else { a });
                    results[slot].push((conf, labels[best] == *gold));
                }
            }
        }
        let name = model
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("| model | task | n | setup | accuracy | ECE |");
        println!("|---|---|---|---|---|---|");
        for (slot, setup) in ["zero-shot", "few-shot (4)", "few-shot + calibration"]
            .iter()
            .enumerate()
        {
            let r = &results[slot];
            let acc = r.iter().filter(|x| x.1).count() as f64 / r.len() as f64;
            println!(
                "| {name} | {task_name} | {} | {setup} | {:.3} | {:.3} |",
                r.len(),
                acc,
                ece(r)
            );
        }
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use candlelit::backend::gpu::Gpu;
    use candlelit::backend::Backend;
    use candlelit::constrain::Constraint;
    use candlelit::engine::{clock, Engine, Prompt, Request, Step, Truncation};
    use candlelit::gguf::Loader;
    use candlelit::sample::{argmax, SamplingParams};
    use candlelit::tokenizer::Message;
    use candlelit::{Error, Result};
    use clap::{Args, Parser, Subcommand};
    use serde_json::json;
    use std::io::{BufRead, Write};
    use std::path::PathBuf;

    #[derive(Parser)]
    #[command(name = "candlelit", about = "Run quantized GGUF language models", version)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Args)]
    struct ModelArgs {
        /// Path of a GGUF file.
        #[arg(long)]
        model: PathBuf,
        /// KV cache size in tokens (default: the model's context, at most 4096).
        #[arg(long)]
        ctx: Option<usize>,
        /// CPU threads for the matrix products (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// CPU arithmetic: `engine` (the browser's and the GPU's steps, the fastest here) or
        /// `llama-cpp` (the steps of llama.cpp's portable build, to compare with it bit for
        /// bit; slower).
        #[arg(long, default_value = "engine")]
        numerics: String,
    }

    #[derive(Args)]
    struct SampleArgs {
        /// 0 is greedy.
        #[arg(long, default_value_t = 0.7)]
        temperature: f32,
        #[arg(long, default_value_t = 40)]
        top_k: usize,
        #[arg(long, default_value_t = 0.95)]
        top_p: f32,
        #[arg(long, default_value_t = 0.05)]
        min_p: f32,
        #[arg(long, default_value_t = 1.0)]
        repeat_penalty: f32,
        #[arg(long, default_value_t = 0.0)]
        presence_penalty: f32,
        #[arg(long, default_value_t = 0.0)]
        frequency_penalty: f32,
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
        /// Stop string (repeatable); not included in the output.
        #[arg(long)]
        stop: Vec<String>,
        /// Keep generating past end-of-generation tokens.
        #[arg(long)]
        ignore_eos: bool,
        /// Constrain the output to JSON valid against this JSON Schema (a file).
        #[arg(long, conflicts_with_all = ["regex", "choice"])]
        json_schema: Option<PathBuf>,
        /// Constrain the output to this regular expression.
        #[arg(long, conflicts_with = "choice")]
        regex: Option<String>,
        /// Constrain the output to one of these strings (repeatable).
        #[arg(long)]
        choice: Vec<String>,
        /// Extra variables for the chat template, as a JSON object, e.g.
        /// '{"enable_thinking": false}' to have Qwen3 answer without thinking first.
        #[arg(long)]
        chat_template_kwargs: Option<String>,
    }

    impl SampleArgs {
        fn constraint(&self) -> Result<Option<Constraint>> {
            if let Some(path) = &self.json_schema {
                let schema = serde_json::from_slice(&std::fs::read(path)?)
                    .map_err(|e| candlelit::Error::InvalidRequest(format!("{}: {e}", path.display())))?;
                return Ok(Some(Constraint::JsonSchema { schema }));
            }
            if let Some(pattern) = &self.regex {
                return Ok(Some(Constraint::Regex {
                    pattern: pattern.clone(),
                }));
            }
            if !self.choice.is_empty() {
                return Ok(Some(Constraint::Choices {
                    choices: self.choice.clone(),
                }));
            }
            Ok(None)
        }

        fn request(&self) -> Result<Request> {
            Ok(Request {
                sampling: SamplingParams {
                    temperature: self.temperature,
                    top_k: self.top_k,
                    top_p: self.top_p,
                    min_p: self.min_p,
                    repetition_penalty: self.repeat_penalty,
                    presence_penalty: self.presence_penalty,
                    frequency_penalty: self.frequency_penalty,
                    seed: self.seed,
                    ..SamplingParams::default()
                },
                max_tokens: self.max_tokens,
                stop: self.stop.clone(),
                ignore_eos: self.ignore_eos,
                constraint: self.constraint()?,
                // `chat` goes on past the context by leaving out its oldest turns.
                truncation: Truncation::Auto,
                chat_template_kwargs: match &self.chat_template_kwargs {
                    None => Default::default(),
                    Some(j) => serde_json::from_str(j).map_err(|e| {
                        candlelit::Error::InvalidRequest(format!(
                            "--chat-template-kwargs: a JSON object, such as '{{\"enable_thinking\": false}}': {e}"
                        ))
                    })?,
                },
                separate_reasoning: true,
            })
        }
    }

    #[derive(Subcommand)]
    enum Cmd {
        /// Raw completion of a prompt.
        Generate {
            #[command(flatten)]
            model: ModelArgs,
            #[arg(long)]
            prompt: String,
            #[command(flatten)]
            sample: SampleArgs,
            /// One JSON object per token, then a stats object.
            #[arg(long)]
            json: bool,
        },
        /// Interactive multi-turn chat through the model's chat template.
        Chat {
            #[command(flatten)]
            model: ModelArgs,
            #[arg(long, default_value = "You are a helpful assistant.")]
            system: String,
            #[command(flatten)]
            sample: SampleArgs,
        },
        /// Token ids of a text as a JSON array.
        Tokenize {
            #[command(flatten)]
            model: ModelArgs,
            #[arg(long)]
            text: String,
            /// Do not add BOS/EOS.
            #[arg(long)]
            no_special: bool,
        },
        /// Classification accuracy and calibration (ECE) on a labelled JSONL set, for
        /// zero-shot, few-shot (4 examples) and few-shot + contextual calibration.
        Eval {
            #[command(flatten)]
            model: ModelArgs,
            /// JSONL of {"text", "label"} (see data/eval/).
            #[arg(long)]
            data: PathBuf,
            /// `sentiment` or `topic`: picks the instruction and the few-shot examples.
            #[arg(long)]
            task: String,
        },
        /// Writes the model as several files of at most `--max-size` bytes of tensors each
        /// (llama.cpp's split layout: OUT-00001-of-0000N.gguf, …), for hosts that cap file
        /// sizes; the page, the API and this CLI load the first part and find the rest.
        Split {
            #[arg(long)]
            model: PathBuf,
            /// Bytes per part, with an optional K, M or G (decimal: 50M = 50,000,000).
            #[arg(long)]
            max_size: String,
            /// Folder and name prefix of the parts.
            #[arg(long)]
            out: PathBuf,
        },
        /// Prefill and decode speed as JSON.
        Bench {
            #[command(flatten)]
            model: ModelArgs,
            #[arg(long, default_value_t = 128)]
            prompt_tokens: usize,
            #[arg(long, default_value_t = 128)]
            gen_tokens: usize,
            /// `cpu`, or `gpu` (Vulkan through wgpu; Mesa's lavapipe where there is no GPU).
            #[arg(long, default_value = "cpu")]
            backend: String,
            /// GPU matrix product kernel: `auto` (the subgroup one on hardware GPUs with
            /// subgroups), `subgroup` or `thread` (a thread per weight row), to compare them.
            #[arg(long, default_value = "auto")]
            gpu_matmul: String,
        },
    }

    /// Prefill `prompt_tokens`, then `gen_tokens` greedy tokens one at a time.
    fn bench<B: Backend>(engine: &Engine<B>, prompt_tokens: usize, gen_tokens: usize) -> Result<serde_json::Value> {
        let m = &engine.model;
        // A fixed prompt: real text repeated to the requested length.
        let text = "The quick brown fox jumps over the lazy dog while the cat watches from the window. ".repeat(64);
        let mut ids = engine.tokenizer.encode(&text, true, false)?;
        ids.truncate(prompt_tokens.min(engine.context_size().saturating_sub(gen_tokens + 1)));
        let mut cache = m.new_cache();
        let t0 = clock::now_ms();
        let mut logits = m.forward(&ids, &mut cache, false)?;
        let prefill_ms = clock::now_ms() - t0;
        let t1 = clock::now_ms();
        for _ in 0..gen_tokens {
            logits = m.forward(&[argmax(&logits)], &mut cache, false)?;
        }
        let decode_ms = clock::now_ms() - t1;
        Ok(json!({
            "prompt_tokens": ids.len(),
            "prefill_ms": prefill_ms,
            "prefill_tokens_per_s": ids.len() as f64 / prefill_ms * 1000.0,
            "gen_tokens": gen_tokens,
            "decode_ms": decode_ms,
            "decode_tokens_per_s": gen_tokens as f64 / decode_ms * 1000.0,
            "pool_jobs": candlelit::backend::pool::stats(),
        }))
    }

    /// `50M`, `1G`, `700K` or plain bytes (decimal units, as llama.cpp's gguf-split takes them).
    fn parse_size(s: &str) -> Result<u64> {
        let (digits, unit) = match s.trim().char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&s.trim()[..i], c.to_ascii_uppercase()),
            _ => (s.trim(), 'B'),
        };
        let scale = match unit {
            'B' => 1,
            'K' => 1_000,
            'M' => 1_000_000,
            'G' => 1_000_000_000,
            _ => 0,
        };
        match digits.parse::<u64>() {
            Ok(n) if n > 0 && scale > 0 => Ok(n * scale),
            _ => Err(Error::InvalidRequest(format!(
                "--max-size {s}: expected a size such as 50M or 2G"
            ))),
        }
    }

    fn load(m: &ModelArgs) -> Result<(Engine, f64)> {
        match m.numerics.as_str() {
            "engine" => {}
            "llama-cpp" => candlelit::backend::llama_cpp::use_llama_cpp_numerics(true),
            other => {
                return Err(Error::InvalidRequest(format!(
                    "--numerics must be engine or llama-cpp, not {other}"
                )))
            }
        }
        if let Some(n) = m.threads {
            // Read by the thread pool when it starts, which is at the first matrix product.
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        }
        let t0 = clock::now_ms();
        let gguf = Loader::load_file(&m.model)?;
        let engine = Engine::new(gguf, m.ctx)?;
        Ok((engine, clock::now_ms() - t0))
    }

    pub fn run() -> Result<()> {
        match Cli::parse().cmd {
            Cmd::Generate {
                model,
                prompt,
                sample,
                json,
            } => {
                let (mut engine, _) = load(&model)?;
                engine.start(&Prompt::Text(prompt), &sample.request()?)?;
                let mut out = std::io::stdout().lock();
                loop {
                    match engine.step()? {
                        Step::Prefill { .. } => {}
                        Step::Token { id, text, .. } => {
                            if json {
                                writeln!(out, "{}", json!({"id": id, "text": text}))?;
                            } else {
                                write!(out, "{text}")?;
                                out.flush()?;
                            }
                        }
                        Step::Done {
                            reason, text, stats, ..
                        } => {
                            if json {
                                if !text.is_empty() {
                                    writeln!(out, "{}", json!({"text": text}))?;
                                }
                                writeln!(out, "{}", json!({"finish_reason": reason, "stats": stats}))?;
                            } else {
                                writeln!(out, "{text}")?;
                                eprintln!(
                                    "[{reason:?}; {:.1} tok/s prefill, {:.1} tok/s decode]",
                                    stats.prefill_tokens_per_s, stats.decode_tokens_per_s
                                );
                            }
                            return Ok(());
                        }
                    }
                }
            }
            Cmd::Chat { model, system, sample } => {
                let (mut engine, _) = load(&model)?;
                let mut messages = vec![];
                if !system.is_empty() {
                    messages.push(Message::new("system", &system));
                }
                let stdin = std::io::stdin();
                let mut out = std::io::stdout();
                eprintln!("Type a message (empty line or Ctrl-D to quit).");
                loop {
                    write!(out, "> ")?;
                    out.flush()?;
                    let mut line = String::new();
                    if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
                        return Ok(());
                    }
                    messages.push(Message::new("user", line.trim_end()));
                    let reply = engine.generate(&Prompt::Chat(messages.clone()), &sample.request()?)?;
                    if !reply.reasoning.is_empty() {
                        eprintln!("[thinking]\n{}\n[/thinking]", reply.reasoning.trim());
                    }
                    writeln!(out, "{}", reply.text)?;
                    let dropped = match reply.stats.dropped_messages {
                        0 => String::new(),
                        n => format!("; {n} oldest messages left out to fit the context"),
                    };
                    eprintln!(
                        "[{} prompt tokens, {} from cache; {:.1} tok/s{dropped}]",
                        reply.stats.prompt_tokens, reply.stats.cached_tokens, reply.stats.decode_tokens_per_s
                    );
                    messages.push(Message::new("assistant", &reply.text));
                }
            }
            Cmd::Tokenize {
                model,
                text,
                no_special,
            } => {
                let gguf = Loader::load_file(&model.model)?;
                let tok = candlelit::tokenizer::Tokenizer::from_gguf(&gguf.metadata)?;
                println!("{}", json!(tok.encode(&text, !no_special, true)?));
                Ok(())
            }
            Cmd::Split { model, max_size, out } => {
                let max = parse_size(&max_size)?;
                let gguf = Loader::load_file(&model)?;
                let dir = out
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                let prefix = out
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| Error::InvalidRequest(format!("--out {} has no file name", out.display())))?;
                std::fs::create_dir_all(dir)?;
                let paths = candlelit::gguf::split::write_parts(&gguf, max, dir, prefix)?;
                let parts = paths
                    .iter()
                    .map(|p| Ok(json!({"path": p, "bytes": std::fs::metadata(p)?.len()})))
                    .collect::<Result<Vec<_>>>()?;
                println!("{}", json!(parts));
                Ok(())
            }
            Cmd::Eval { model, data, task } => {
                let (mut engine, _) = load(&model)?;
                super::eval::run(&mut engine, &data, &task, &model.model)
            }
            Cmd::Bench {
                model,
                prompt_tokens,
                gen_tokens,
                backend,
                gpu_matmul,
            } => {
                let (mut result, adapter, load_ms) = match backend.as_str() {
                    "cpu" => {
                        let (engine, load_ms) = load(&model)?;
                        (bench(&engine, prompt_tokens, gen_tokens)?, None, load_ms)
                    }
                    "gpu" => {
                        let t0 = clock::now_ms();
                        let gpu = Gpu::new_blocking()?;
                        match gpu_matmul.as_str() {
                            "auto" => {}
                            "subgroup" if !gpu.use_subgroup_matmul(true) => {
                                return Err(candlelit::Error::Gpu(format!("{} has no subgroups", gpu.info().name)))
                            }
                            "subgroup" => {}
                            "thread" => {
                                gpu.use_subgroup_matmul(false);
                            }
                            other => {
                                return Err(candlelit::Error::InvalidRequest(format!(
                                    "--gpu-matmul must be auto, subgroup or thread, not {other}"
                                )))
                            }
                        }
                        let mut info = serde_json::to_value(gpu.info()).unwrap_or_default();
                        if let Some(o) = info.as_object_mut() {
                            o.insert("subgroup_matmul".into(), json!(gpu.subgroup_matmul()));
                        }
                        let engine = Engine::with_backend(Loader::load_file(&model.model)?, model.ctx, gpu)?;
                        let load_ms = clock::now_ms() - t0;
                        (bench(&engine, prompt_tokens, gen_tokens)?, Some(info), load_ms)
                    }
                    other => {
                        return Err(candlelit::Error::InvalidRequest(format!(
                            "--backend must be cpu or gpu, not {other}"
                        )))
                    }
                };
                if let Some(obj) = result.as_object_mut() {
                    obj.insert(
                        "model".into(),
                        json!(model.model.file_name().map(|f| f.to_string_lossy().into_owned())),
                    );
                    obj.insert("backend".into(), json!(backend));
                    obj.insert("adapter".into(), json!(adapter));
                    obj.insert("threads".into(), json!(model.threads));
                    obj.insert("load_ms".into(), json!(load_ms));
                }
                println!("{result}");
                Ok(())
            }
        }
    }
}
