//! What a chat template gets from Python's Jinja, set up as `transformers` sets it up, and
//! minijinja lacks or does differently. Models were trained on prompts rendered that way,
//! so a difference here is a different prompt: `tojson` as Python's `json.dumps`, the
//! `strftime_now` global, and the `{% generation %}` tag.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, each overridable. minijinja's own `tojson` is made for
/// HTML (it escapes `<`, `>`, `&` and `'`) and compact (`{"a":1}`), where Python writes
/// `{"a": 1}`; tool schemas in a prompt must read as the model saw them in training.
pub fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_string(),
            None => " ".repeat(usize::try_from(v.as_i64().unwrap_or(0)).unwrap_or(0)),
        }),
    };
    let (item_sep, key_sep) = match kwargs.get::<Option<Vec<String>>>("separators")? {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => return Err(invalid("tojson: separators must be a pair of strings")),
        // Python drops the space after the comma when it indents (it would end each line).
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let style = JsonStyle {
        indent,
        item_sep,
        key_sep,
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    style.write(&value, 0, &mut out)?;
    Ok(Value::from(out))
}

struct JsonStyle {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    ensure_ascii: bool,
    sort_keys: bool,
}

impl JsonStyle {
    fn write(&self, v: &Value, depth: usize, out: &mut String) -> Result<(), Error> {
        match v.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number if v.is_integer() => out.push_str(&v.to_string()),
            ValueKind::Number => out.push_str(&python_float(f64::try_from(v.clone())?)),
            ValueKind::String => self.write_str(v.as_str().unwrap_or_default(), out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = v.try_iter()?.collect();
                self.write_container(out, depth, '[', ']', &items, |item, d, o| self.write(item, d, o))?;
            }
            ValueKind::Map => {
                let mut pairs = Vec::new();
                for key in v.try_iter()? {
                    let value = v.get_item(&key)?;
                    pairs.push((key, value));
                }
                if self.sort_keys {
                    pairs.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.write_container(out, depth, '{', '}', &pairs, |(k, val), d, o| {
                    // Python writes non-string keys as strings ({1: 2} → {"1": 2}).
                    match k.as_str() {
                        Some(s) => self.write_str(s, o),
                        None => self.write_str(&k.to_string(), o),
                    }
                    o.push_str(&self.key_sep);
                    self.write(val, d, o)
                })?;
            }
            kind => return Err(invalid(&format!("Object of type {kind} is not JSON serializable"))),
        }
        Ok(())
    }

    fn write_container<T>(
        &self,
        out: &mut String,
        depth: usize,
        open: char,
        close: char,
        items: &[T],
        mut each: impl FnMut(&T, usize, &mut String) -> Result<(), Error>,
    ) -> Result<(), Error> {
        out.push(open);
        if items.is_empty() {
            out.push(close);
            return Ok(());
        }
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.item_sep);
            }
            self.newline(depth + 1, out);
            each(item, depth + 1, out)?;
        }
        self.newline(depth, out);
        out.push(close);
        Ok(())
    }

    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(indent) = &self.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(indent);
            }
        }
    }

    fn write_str(&self, s: &str, out: &mut String) {
        // serde_json escapes exactly the characters Python's json does when non-ASCII is kept.
        let quoted = serde_json::to_string(s).unwrap_or_default();
        if !self.ensure_ascii {
            out.push_str(&quoted);
            return;
        }
        for c in quoted.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
}

/// A float as Python's `repr` writes it: the shortest digits that read back, in positional
/// notation between 1e-4 and 1e16 (always with a fractional part), else as `1e-05`/`1e+16`.
fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = x.to_string();
        if s.contains('.') {
            s
        } else {
            s + ".0"
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// A value printed by `{{ }}` as Python's `str()` prints it: `None`, `True`, `False`, and
/// lists and dicts as their repr (`{'a': 1, 'b': [True, None]}`), where minijinja writes
/// JSON-like text. Templates print tool definitions this way (Apriel's `{{ tool }}`), and the
/// model saw Python's spelling in training.
pub fn format(out: &mut minijinja::Output<'_>, state: &minijinja::State<'_, '_>, value: &Value) -> Result<(), Error> {
    match python_spelling(value) {
        Some(text) => out
            .write_str(&text)
            .map_err(|_| Error::new(ErrorKind::WriteFailure, "writing the template's output")),
        None => minijinja::escape_formatter(out, state, value),
    }
}

/// Jinja's `string` filter as Python's `str()`: the same spelling as [`format`] prints
/// (Apriel's templates write `{{ tool|string }}`).
pub fn string(value: Value) -> Value {
    match python_spelling(&value) {
        Some(text) => Value::from(text),
        None if value.kind() == ValueKind::String => value,
        None => Value::from(value.to_string()),
    }
}

/// Python's `str()` of the values minijinja spells otherwise (none, booleans, lists, dicts).
fn python_spelling(value: &Value) -> Option<String> {
    match value.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Map | ValueKind::Seq => Some(python_repr(value)),
        _ => None,
    }
}

/// Python's `repr` of a value (inside a list or dict, strings are quoted).
fn python_repr(v: &Value) -> String {
    match v.kind() {
        ValueKind::None | ValueKind::Undefined => "None".into(),
        ValueKind::Bool => if v.is_true() { "True" } else { "False" }.into(),
        ValueKind::Number if v.is_integer() => v.to_string(),
        ValueKind::Number => match f64::try_from(v.clone()) {
            Ok(x) if x.is_nan() => "nan".into(),
            Ok(x) if x.is_infinite() => if x > 0.0 { "inf" } else { "-inf" }.into(),
            Ok(x) => python_float(x),
            Err(_) => v.to_string(),
        },
        ValueKind::String => python_str_repr(v.as_str().unwrap_or_default()),
        ValueKind::Seq => {
            let items: Vec<String> = v.try_iter().into_iter().flatten().map(|x| python_repr(&x)).collect();
            format!("[{}]", items.join(", "))
        }
        ValueKind::Map => {
            let items: Vec<String> = v
                .try_iter()
                .into_iter()
                .flatten()
                .map(|k| {
                    let item = v.get_item(&k).unwrap_or_default();
                    format!("{}: {}", python_repr(&k), python_repr(&item))
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        _ => v.to_string(),
    }
}

/// A string as Python's `repr` quotes it: in single quotes unless it holds a single quote and
/// no double quote; backslash escapes for the quote, backslashes and control characters.
fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Jinja's `indent` as Python's Jinja does it: a trailing line break is kept
/// (`'{\n'|indent(4, true)` is `'    {\n'`, where minijinja drops it) and `width` may be a
/// string to indent with.
pub fn indent(
    value: String,
    width: Option<Value>,
    first: Option<bool>,
    blank: Option<bool>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let width = match width {
        Some(w) => Some(w),
        None => kwargs.get::<Option<Value>>("width")?,
    };
    let first = first
        .map_or_else(|| kwargs.get::<Option<bool>>("first"), |f| Ok(Some(f)))?
        .unwrap_or(false);
    let blank = blank
        .map_or_else(|| kwargs.get::<Option<bool>>("blank"), |b| Ok(Some(b)))?
        .unwrap_or(false);
    kwargs.assert_all_used()?;
    let with = match width {
        None => "    ".to_string(),
        Some(w) => match w.as_str() {
            Some(s) => s.to_string(),
            None => " ".repeat(usize::try_from(w.as_i64().unwrap_or(4)).unwrap_or(0)),
        },
    };
    let text = value + "\n";
    let lines = splitlines(&text);
    let mut rv = if blank {
        lines.join(&format!("\n{with}"))
    } else {
        let mut rest = lines.iter();
        let mut rv = rest.next().map(|l| l.to_string()).unwrap_or_default();
        let rest: Vec<String> = rest
            .map(|l| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("{with}{l}")
                }
            })
            .collect();
        if !rest.is_empty() {
            rv.push('\n');
            rv.push_str(&rest.join("\n"));
        }
        rv
    };
    if first {
        rv.insert_str(0, &with);
    }
    Ok(rv)
}

/// Python's `str.splitlines()`: every line boundary Python knows, no empty last line after a
/// final break.
fn splitlines(s: &str) -> Vec<&str> {
    let mut lines = vec![];
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = match c {
            '\r' if matches!(chars.peek(), Some((_, '\n'))) => {
                chars.next();
                i + 2
            }
            '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
                i + c.len_utf8()
            }
            _ => continue,
        };
        lines.push(&s[start..i]);
        start = end;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// Python's `is iterable`: `none` is not (minijinja says it is, and templates guard
/// `tools | length` with it); an undefined value is, as Jinja's `Undefined` iterates as empty.
pub fn is_iterable(value: Value) -> bool {
    !value.is_none() && value.try_iter().is_ok()
}

fn invalid(msg: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.to_string())
}

/// `strftime_now(format)`: transformers passes the current date (Llama 3's templates write
/// it into the system prompt). `now` is seconds since 1970 in UTC.
pub fn strftime(format: &str, now: i64) -> String {
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = now.div_euclid(86_400);
    let secs = now.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let yday = days - days_from_civil(year, 1, 1) + 1;
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    let month_name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // glibc's `%-d` (no padding) is accepted, as Python on Linux accepts it.
        let mut spec = chars.next();
        let unpadded = spec == Some('-');
        if unpadded {
            spec = chars.next();
        }
        let num = |v: i64, width: usize| {
            if unpadded {
                v.to_string()
            } else {
                format!("{v:0width$}")
            }
        };
        match spec {
            Some('d') => out += &num(day, 2),
            Some('e') => out += &format!("{day:2}"),
            Some('m') => out += &num(month, 2),
            Some('Y') => out += &year.to_string(),
            Some('y') => out += &num(year.rem_euclid(100), 2),
            Some('b') | Some('h') => out += &month_name[..3],
            Some('B') => out += month_name,
            Some('a') => out += &DAYS[weekday][..3],
            Some('A') => out += DAYS[weekday],
            Some('H') => out += &num(hour, 2),
            Some('I') => out += &num((hour + 11) % 12 + 1, 2),
            Some('p') => out += if hour < 12 { "AM" } else { "PM" },
            Some('M') => out += &num(minute, 2),
            Some('S') => out += &num(second, 2),
            Some('j') => out += &num(yday, 3),
            Some('F') => out += &format!("{year}-{month:02}-{day:02}"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since 1970 now, in UTC (`SystemTime` has no clock in wasm32-unknown-unknown).
pub fn unix_now() -> i64 {
    #[cfg(target_arch = "wasm32")]
    {
        (js_sys::Date::now() / 1000.0) as i64
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// transformers' templates may mark the assistant's part with `{% generation %}` …
/// `{% endgeneration %}` (its AssistantTracker extension, for training masks); rendering a
/// prompt, the tags only render their body. minijinja has no such tag, so they are taken out
/// of the source, whitespace control included (`{%- generation -%}` trims as it would).
pub fn strip_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let Some(len) = rest[start..].find("%}").map(|e| e + 2) else {
            break;
        };
        let tag = &rest[start..start + len];
        let inner = tag[2..len - 2].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        if inner == "generation" || inner == "endgeneration" {
            // An empty comment keeps the tag's whitespace control where it was.
            let open = if tag.starts_with("{%-") { "{#-" } else { "{#" };
            let close = if tag.ends_with("-%}") { "-#}" } else { "#}" };
            out.push_str(&rest[..start]);
            out.push_str(open);
            out.push_str(close);
        } else {
            out.push_str(&rest[..start + len]);
        }
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_as_python_writes_them() {
        for (x, want) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (1e-5, "1e-05"),
            (1e16, "1e+16"),
            (123456.789, "123456.789"),
            (-2.5e-7, "-2.5e-07"),
            (0.0001, "0.0001"),
        ] {
            assert_eq!(python_float(x), want);
        }
    }

    #[test]
    fn dates_match_pythons_strftime() {
        // datetime(2026, 9, 29, 12, 34, 56, tzinfo=utc).timestamp() == 1790685296
        let t = 1_790_685_296;
        assert_eq!(strftime("%d %b %Y", t), "29 Sep 2026");
        assert_eq!(
            strftime("%A %B %-d, %y %H:%M:%S %j %p %%", t),
            "Tuesday September 29, 26 12:34:56 272 PM %"
        );
        assert_eq!(strftime("%Y-%m-%d %a", 0), "1970-01-01 Thu");
        assert_eq!(strftime("%Y-%m-%d", 951_782_400), "2000-02-29");
    }

    #[test]
    fn values_print_as_python_prints_them() {
        let env = {
            let mut env = minijinja::Environment::new();
            env.set_formatter(format);
            env.add_filter("indent", indent);
            env.add_filter("string", string);
            env
        };
        let render = |src: &str, ctx: Value| env.render_str(src, ctx).unwrap();
        let ctx = Value::from_serialize(serde_json::json!({
            "d": {"b": [true, null, 1, 2.5, "it's"], "a": "say \"hi\"\n", "e": {}}
        }));
        assert_eq!(
            render("{{ d }} {{ none }} {{ true }} {{ 'x' }} {{ [] }}", ctx),
            r#"{'b': [True, None, 1, 2.5, "it's"], 'a': 'say "hi"\n', 'e': {}} None True x []"#
        );
        assert_eq!(
            render(
                "{{ (d.b|string)[:6] }}",
                Value::from_serialize(serde_json::json!({"d": {"b": [true]}}))
            ),
            "[True]"
        );
        let ind = |s: &str| render(s, Value::from(()));
        assert_eq!(ind("{{ '{\n'|indent(4, true) }}"), "    {\n");
        assert_eq!(ind("{{ 'a\nb\n\nc'|indent(2) }}"), "a\n  b\n\n  c");
        assert_eq!(ind("{{ 'a\nb'|indent('> ', first=true) }}"), "> a\n> b");
        assert_eq!(ind("{{ 'a\n\nb'|indent(2, blank=true) }}"), "a\n  \n  b");
        assert_eq!(splitlines("a\r\nb\rc\n"), vec!["a", "b", "c"]);
    }

    #[test]
    fn generation_tags_leave_their_body() {
        assert_eq!(
            strip_generation_tags("a {%- generation -%} b {% endgeneration %}{% if x %}c{% endif %}"),
            "a {#--#} b {##}{% if x %}c{% endif %}"
        );
    }
}
