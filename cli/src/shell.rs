//! The interactive command line's pieces that do not care where the bytes come from: splitting
//! a line into words as a shell would, completing a word from the command tree, and a line
//! editor (echo, backspace, history, tab completion) fed the bytes a terminal sends.

use clap::CommandFactory;

/// Splits `line` into words: blanks separate them, '…' and "…" quote, \ escapes the next
/// character (outside single quotes).
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("a quote (') is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x) => cur.push(x),
                            None => return Err("a quote (\") is not closed".into()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("a quote (\") is not closed".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(x) = chars.next() {
                    cur.push(x);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// What the word being typed (the last of `line`, maybe empty) can become: subcommands and
/// options of the command so far.
pub fn complete(line: &str) -> Vec<String> {
    let words = split_words(line).unwrap_or_default();
    let ends_blank = line.ends_with(char::is_whitespace) || line.is_empty();
    let (done, partial) = if ends_blank {
        (&words[..], "")
    } else {
        (
            &words[..words.len().saturating_sub(1)],
            words.last().map(String::as_str).unwrap_or(""),
        )
    };
    let root = crate::args::Cli::command();
    let mut cmd = &root;
    for w in done {
        if let Some(sub) = cmd.find_subcommand(w) {
            cmd = sub;
        }
    }
    let mut out: Vec<String> = Vec::new();
    if !partial.starts_with('-') {
        out.extend(
            cmd.get_subcommands()
                .map(|s| s.get_name().to_string())
                .filter(|n| n != "help" && n.starts_with(partial)),
        );
    }
    if partial.starts_with('-') || out.is_empty() {
        out.extend(
            cmd.get_arguments()
                .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
                .filter(|n| n.starts_with(partial)),
        );
    }
    out.sort();
    out.dedup();
    out
}

/// What the editor asks its terminal to do after some input.
#[derive(Debug, PartialEq, Eq)]
pub enum Edit {
    /// Bytes to show (echo, redraws).
    Show(Vec<u8>),
    /// A whole line was entered.
    Line(String),
    /// Ctrl-C: the line is dropped.
    Interrupt,
    /// Ctrl-D on an empty line.
    End,
    /// Show the prompt again, then this line (after completion choices were listed).
    Redraw(String),
}

/// A line editor for a terminal in raw mode.
#[derive(Default)]
pub struct LineEditor {
    line: String,
    history: Vec<String>,
    /// Position while walking the history (None: the line being typed).
    at: Option<usize>,
    escape: Vec<u8>,
    /// The bytes of a character not yet whole.
    partial: Vec<u8>,
    /// Typed without echo (a password).
    pub secret: bool,
    /// Bytes after an entered line (typed ahead), for the next line.
    rest: Vec<u8>,
}

const MAX_LINE: usize = 4096;
const MAX_HISTORY: usize = 500;

impl LineEditor {
    pub fn new() -> LineEditor {
        LineEditor::default()
    }

    /// Starts a new line after a prompt.
    pub fn reset(&mut self, secret: bool) {
        self.line.clear();
        self.at = None;
        self.escape.clear();
        self.secret = secret;
    }

    fn replace_line(&mut self, with: String, out: &mut Vec<Edit>) {
        let back = self.line.chars().count();
        let mut b = Vec::new();
        for _ in 0..back {
            b.extend_from_slice(b"\x08 \x08");
        }
        b.extend_from_slice(with.as_bytes());
        self.line = with;
        out.push(Edit::Show(b));
    }

    /// What came after the last entered line, not fed yet.
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.rest)
    }

    /// Feeds the bytes the terminal sent; what to do, in order. It stops after an entered line
    /// (or Ctrl-C, or the end): the bytes after it are kept for [`LineEditor::take_rest`].
    pub fn feed(&mut self, data: &[u8]) -> Vec<Edit> {
        let mut out = Vec::new();
        for (i, &b) in data.iter().enumerate() {
            if matches!(
                out.last(),
                Some(Edit::Line(_) | Edit::Interrupt | Edit::End)
            ) {
                self.rest = data[i..].to_vec();
                break;
            }
            if !self.escape.is_empty() {
                self.escape.push(b);
                if self.escape.len() == 2 && b != b'[' && b != b'O' {
                    self.escape.clear();
                } else if self.escape.len() >= 3 {
                    let seq = std::mem::take(&mut self.escape);
                    if !self.secret {
                        match seq[2] {
                            b'A' if !self.history.is_empty() => {
                                let i = match self.at {
                                    None => self.history.len() - 1,
                                    Some(i) => i.saturating_sub(1),
                                };
                                self.at = Some(i);
                                let h = self.history[i].clone();
                                self.replace_line(h, &mut out);
                            }
                            b'B' => {
                                if let Some(i) = self.at {
                                    if i + 1 < self.history.len() {
                                        self.at = Some(i + 1);
                                        let h = self.history[i + 1].clone();
                                        self.replace_line(h, &mut out);
                                    } else {
                                        self.at = None;
                                        self.replace_line(String::new(), &mut out);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                continue;
            }
            match b {
                0x1b => self.escape.push(b),
                b'\r' | b'\n' => {
                    let line = std::mem::take(&mut self.line);
                    out.push(Edit::Show(b"\r\n".to_vec()));
                    if !self.secret && !line.trim().is_empty() && self.history.last() != Some(&line)
                    {
                        self.history.push(line.clone());
                        if self.history.len() > MAX_HISTORY {
                            self.history.remove(0);
                        }
                    }
                    self.at = None;
                    out.push(Edit::Line(line));
                }
                0x03 => {
                    self.line.clear();
                    out.push(Edit::Show(b"^C\r\n".to_vec()));
                    out.push(Edit::Interrupt);
                }
                0x04 if self.line.is_empty() => out.push(Edit::End),
                0x7f | 0x08 => {
                    if self.line.pop().is_some() && !self.secret {
                        out.push(Edit::Show(b"\x08 \x08".to_vec()));
                    }
                }
                b'\t' if !self.secret => {
                    let options = complete(&self.line);
                    let partial_len = if self.line.ends_with(' ') || self.line.is_empty() {
                        0
                    } else {
                        self.line
                            .rsplit(' ')
                            .next()
                            .map(|w| w.chars().count())
                            .unwrap_or(0)
                    };
                    match options.as_slice() {
                        [] => {}
                        [one] => {
                            let rest: String = one.chars().skip(partial_len).collect();
                            let add = format!("{rest} ");
                            self.line.push_str(&add);
                            out.push(Edit::Show(add.into_bytes()));
                        }
                        many => {
                            // The common start, then the choices under the line.
                            let common = many.iter().skip(1).fold(many[0].clone(), |acc, o| {
                                acc.chars()
                                    .zip(o.chars())
                                    .take_while(|(a, b)| a == b)
                                    .map(|(a, _)| a)
                                    .collect()
                            });
                            let rest: String = common.chars().skip(partial_len).collect();
                            self.line.push_str(&rest);
                            out.push(Edit::Show(
                                format!("\r\n{}\r\n", many.join("  ")).into_bytes(),
                            ));
                            out.push(Edit::Redraw(self.line.clone()));
                        }
                    }
                }
                b if b < 0x20 => {}
                b => {
                    if self.line.len() >= MAX_LINE {
                        continue;
                    }
                    self.partial.push(b);
                    if let Ok(s) = std::str::from_utf8(&self.partial) {
                        let s = s.to_string();
                        self.partial.clear();
                        self.line.push_str(&s);
                        if !self.secret {
                            out.push(Edit::Show(s.into_bytes()));
                        }
                    } else if self.partial.len() >= 4 {
                        self.partial.clear();
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_as_a_shell_would() {
        assert_eq!(
            split_words(r#"vps create "web 1" --ipv4 10.0.0.1 'a b' c\ d"#).unwrap(),
            vec!["vps", "create", "web 1", "--ipv4", "10.0.0.1", "a b", "c d"]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_words("''").unwrap(), vec![""]);
        assert!(split_words("vps 'open").is_err());
    }

    #[test]
    fn completion_follows_the_command_tree() {
        assert!(complete("").contains(&"vps".to_string()));
        assert_eq!(complete("vp"), vec!["vps"]);
        assert!(complete("vps ").contains(&"create".to_string()));
        assert_eq!(complete("vps cr"), vec!["create"]);
        assert!(complete("vps create --te").contains(&"--template".to_string()));
    }

    #[test]
    fn the_editor_echoes_edits_and_remembers() {
        let mut e = LineEditor::new();
        let out = e.feed(b"vps lisz\x7ft\r");
        assert_eq!(out.last(), Some(&Edit::Line("vps list".into())));
        // Up brings it back; Enter runs it again.
        let out = e.feed(b"\x1b[A\r");
        assert_eq!(out.last(), Some(&Edit::Line("vps list".into())));
        // Tab completes a unique word.
        let out = e.feed(b"vps cr\t");
        assert!(out.contains(&Edit::Show(b"eate ".to_vec())), "{out:?}");
        assert_eq!(
            e.feed(b"\x03"),
            vec![Edit::Show(b"^C\r\n".to_vec()), Edit::Interrupt]
        );
        assert_eq!(e.feed(b"\x04"), vec![Edit::End]);
        // A secret is not echoed and not remembered.
        e.reset(true);
        let out = e.feed(b"pw\r");
        assert_eq!(
            out,
            vec![Edit::Show(b"\r\n".to_vec()), Edit::Line("pw".into())]
        );
        e.reset(false);
        let out = e.feed(b"\x1b[A");
        assert!(
            !format!("{out:?}").contains("pw"),
            "the secret came back: {out:?}"
        );
    }
}
