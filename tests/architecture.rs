//! The architecture, checked: the server's modules import only downward, and no files or
//! modules of the server or the load generator import each other in a cycle.
//!
//! The check reads `src/` itself (a small Rust lexer, no dependencies) and builds the graph
//! of `use` declarations and `crate::…`/`super::…` paths between files, leaving out test
//! code (`#[cfg(test)]` items). A `pub use` is an alias, not a dependency: a path through a
//! facade resolves to the module that defines the item (`crate::store::OrderRecord` is an
//! edge to `store::orders` when `store/mod.rs` re-exports it from there).
//!
//! Rules:
//! - every import of a top-level module is allowed by [`LAYERS`];
//! - the graph of files has no cycle, nor the graph of modules at any depth (the modules of
//!   `store/sqlite/` and of `store/postgres/` may not import each other both ways, say).

// An integration test fails by panicking: its helpers and `backend_tests!` bodies unwrap
// and assert freely, though clippy does not see them as test code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "an integration test fails by panicking"
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// What each top-level module of the server may import (besides itself). Reading down the
/// table goes down the layers: transport and commands, then use cases, then the event and
/// job machinery, then adapters, then the pure domain.
const LAYERS: &[(&str, &[&str])] = &[
    ("main", &["cli", "config"]),
    (
        "cli",
        &[
            "wiring", "app", "config", "domain", "store", "cluster", "clock",
        ],
    ),
    (
        "wiring",
        &[
            "http", "jobs", "app", "events", "store", "cluster", "payment", "auth", "metrics",
            "config", "clock", "domain",
        ],
    ),
    (
        "http",
        &[
            "app", "events", "store", "cluster", "auth", "metrics", "config", "clock", "domain",
        ],
    ),
    (
        "jobs",
        &[
            "app", "events", "store", "metrics", "config", "clock", "domain",
        ],
    ),
    (
        "app",
        &[
            "events", "store", "cluster", "payment", "auth", "metrics", "config", "clock", "domain",
        ],
    ),
    (
        "events",
        &["store", "cluster", "auth", "metrics", "clock", "domain"],
    ),
    (
        "cluster",
        &["store", "auth", "metrics", "config", "clock", "domain"],
    ),
    // The gateway's circuit breaker measures its open period on the clock and reports to
    // the metrics (`payment::breaker`).
    ("payment", &["metrics", "clock", "domain"]),
    ("store", &["domain"]),
    ("auth", &["clock", "domain"]),
    ("metrics", &["domain"]),
    ("config", &[]),
    ("clock", &["domain"]),
    ("domain", &[]),
];

// ---------------------------------------------------------------------------------------
// Lexing
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    PathSep,
    Open(char),
    Close(char),
    Punct(char),
}

/// Identifiers and punctuation, without comments, literals and lifetimes.
fn lex(src: &str) -> Vec<Tok> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' || (c == 'b' && at(i + 1) == '"') {
            i += if c == 'b' { 2 } else { 1 };
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if (c == 'r' || (c == 'b' && at(i + 1) == 'r'))
            && matches!(at(i + 1 + usize::from(c == 'b')), '"' | '#')
            && {
                let mut j = i + 1 + usize::from(c == 'b');
                while at(j) == '#' {
                    j += 1;
                }
                at(j) == '"'
            }
        {
            i += 1 + usize::from(c == 'b');
            let mut hashes = 0;
            while at(i) == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
        } else if c == '\'' {
            if at(i + 1) == '\\' {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                // A lifetime.
                i += 1;
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            toks.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            while at(i).is_alphanumeric()
                || at(i) == '_'
                || at(i) == '.' && at(i + 1).is_ascii_digit()
            {
                i += 1;
            }
        } else if c == ':' && at(i + 1) == ':' {
            toks.push(Tok::PathSep);
            i += 2;
        } else if matches!(c, '(' | '[' | '{') {
            toks.push(Tok::Open(c));
            i += 1;
        } else if matches!(c, ')' | ']' | '}') {
            toks.push(Tok::Close(c));
            i += 1;
        } else {
            toks.push(Tok::Punct(c));
            i += 1;
        }
    }
    toks
}

fn ident(t: Option<&Tok>) -> Option<&str> {
    match t {
        Some(Tok::Ident(s)) => Some(s),
        _ => None,
    }
}

/// Drops every item marked `#[cfg(test)]`.
fn without_tests(toks: Vec<Tok>) -> Vec<Tok> {
    let cfg_test = [
        Tok::Punct('#'),
        Tok::Open('['),
        Tok::Ident("cfg".into()),
        Tok::Open('('),
        Tok::Ident("test".into()),
        Tok::Close(')'),
        Tok::Close(']'),
    ];
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        if toks[i..].starts_with(&cfg_test) {
            i += cfg_test.len();
            // Skip to the end of the item: a `;` or a balanced `{…}`.
            let mut depth = 0;
            while i < toks.len() {
                match &toks[i] {
                    Tok::Open(_) => depth += 1,
                    Tok::Close(c) => {
                        depth -= 1;
                        if depth == 0 && *c == '}' {
                            i += 1;
                            break;
                        }
                    }
                    Tok::Punct(';') if depth == 0 => {
                        i += 1;
                        break;
                    }
                    _ => {}
                }
                i += 1;
            }
        } else {
            out.push(toks[i].clone());
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Parsing: use trees, paths, re-exports, defined items
// ---------------------------------------------------------------------------------------

type ModPath = Vec<String>;

/// One file of the crate.
#[derive(Default)]
struct Module {
    file: PathBuf,
    /// Paths it uses (as written, relative to the module).
    uses: Vec<ModPath>,
    /// `pub use` aliases: name → path as written.
    reexports: BTreeMap<String, ModPath>,
    /// `pub use path::*` sources, as written.
    globs: Vec<ModPath>,
    /// Names of the items it defines.
    items: BTreeSet<String>,
    /// Names of its child modules (`mod x;`).
    children: BTreeSet<String>,
}

/// Expands a use tree starting at `toks[*i]` into `(path, alias)` pairs; `*` is a segment.
fn use_tree(toks: &[Tok], i: &mut usize, prefix: &ModPath, out: &mut Vec<(ModPath, String)>) {
    let mut path = prefix.clone();
    loop {
        match toks.get(*i) {
            Some(Tok::PathSep) => *i += 1,
            Some(Tok::Ident(s)) if s == "as" => {
                *i += 1;
                let alias = ident(toks.get(*i)).unwrap_or("_").to_owned();
                *i += 1;
                out.push((path, alias));
                return;
            }
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                *i += 1;
            }
            Some(Tok::Punct('*')) => {
                *i += 1;
                path.push("*".into());
                out.push((path, "*".into()));
                return;
            }
            Some(Tok::Open('{')) => {
                *i += 1;
                loop {
                    match toks.get(*i) {
                        Some(Tok::Close('}')) => {
                            *i += 1;
                            return;
                        }
                        Some(Tok::Punct(',')) => *i += 1,
                        None => return,
                        _ => use_tree(toks, i, &path, out),
                    }
                }
            }
            _ => {
                let name = path.last().cloned().unwrap_or_default();
                if name == "self" {
                    path.pop();
                    let alias = path.last().cloned().unwrap_or_default();
                    out.push((path, alias));
                } else if !path.is_empty() {
                    out.push((path, name));
                }
                return;
            }
        }
    }
}

const ITEM_KEYWORDS: &[&str] = &[
    "struct", "enum", "trait", "fn", "type", "const", "static", "union", "mod",
];

fn parse_module(file: PathBuf, src: &str) -> Module {
    let toks = without_tests(lex(src));
    let mut m = Module {
        file,
        ..Module::default()
    };
    let mut i = 0;
    while i < toks.len() {
        let word = ident(toks.get(i));
        if word == Some("use") {
            let public = i > 0
                && (ident(toks.get(i - 1)) == Some("pub")
                    || (toks.get(i - 1) == Some(&Tok::Close(')'))
                        && i >= 4
                        && ident(toks.get(i - 4)) == Some("pub")));
            i += 1;
            let mut pairs = Vec::new();
            use_tree(&toks, &mut i, &Vec::new(), &mut pairs);
            for (path, alias) in pairs {
                if public {
                    if alias == "*" {
                        m.globs.push(path[..path.len() - 1].to_vec());
                    } else {
                        m.reexports.insert(alias, path);
                    }
                } else if alias == "*" {
                    m.uses.push(path[..path.len() - 1].to_vec());
                } else {
                    m.uses.push(path);
                }
            }
            continue;
        }
        if word == Some("mod") {
            if let (Some(name), Some(Tok::Punct(';'))) = (ident(toks.get(i + 1)), toks.get(i + 2)) {
                m.children.insert(name.to_owned());
            }
        }
        if let Some(w) = word {
            if ITEM_KEYWORDS.contains(&w) {
                if let Some(name) = ident(toks.get(i + 1)) {
                    m.items.insert(name.to_owned());
                }
            }
        }
        // A path in code: `crate::…`, `super::…`, `self::…` or `child::…`.
        let starts_path = toks.get(i + 1) == Some(&Tok::PathSep)
            && (i == 0 || toks.get(i - 1) != Some(&Tok::PathSep));
        if let (Some(w), true) = (word, starts_path) {
            let mut path = vec![w.to_owned()];
            let mut j = i + 1;
            while toks.get(j) == Some(&Tok::PathSep) {
                match ident(toks.get(j + 1)) {
                    Some(s) => path.push(s.to_owned()),
                    None => break,
                }
                j += 2;
            }
            m.uses.push(path);
            i = j;
            continue;
        }
        i += 1;
    }
    m
}

// ---------------------------------------------------------------------------------------
// The crate's module graph
// ---------------------------------------------------------------------------------------

struct Crate {
    modules: BTreeMap<ModPath, Module>,
}

fn module_path(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).expect("a file under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs").to_owned();
    match stem.as_str() {
        "mod" | "lib" => {}
        _ => parts.push(stem),
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

impl Crate {
    fn read(src: &Path) -> Crate {
        let mut files = Vec::new();
        rust_files(src, &mut files);
        let mut modules = BTreeMap::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable source");
            let mut path = module_path(src, &file);
            if file.file_name().is_some_and(|n| n == "main.rs") && path == ["main"] {
                // The binary: its own crate root, reaching the library as `stampede::`.
                path = vec!["main".into()];
            }
            modules.insert(path, parse_module(file, &text));
        }
        // Modules declared `#[cfg(test)] mod x;` are test code: drop them and their files.
        let declared: BTreeSet<ModPath> = modules
            .iter()
            .flat_map(|(path, m)| {
                m.children.iter().map(move |c| {
                    let mut child = if path == &["main"] {
                        vec![]
                    } else {
                        path.clone()
                    };
                    child.push(c.clone());
                    child
                })
            })
            .collect();
        modules.retain(|path, _| path.is_empty() || path == &["main"] || declared.contains(path));
        Crate { modules }
    }

    fn is_module(&self, path: &[String]) -> bool {
        self.modules.contains_key(path)
    }

    /// Makes a written path absolute from the crate root, or `None` for other crates.
    fn absolute(&self, from: &ModPath, path: &ModPath) -> Option<ModPath> {
        let mut base = if from == &["main"] {
            vec![]
        } else {
            from.clone()
        };
        let mut rest = path.as_slice();
        match rest.first().map(String::as_str) {
            Some("crate") => {
                base.clear();
                rest = &rest[1..];
            }
            Some("stampede") if from == &["main"] => rest = &rest[1..],
            Some("super") => {
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop();
                    rest = &rest[1..];
                }
            }
            Some("self") => rest = &rest[1..],
            Some(first) => {
                let mut child = base.clone();
                child.push(first.to_owned());
                if !self.is_module(&child) {
                    return None;
                }
            }
            None => return None,
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The module an absolute path lands in, following `pub use` aliases to the module
    /// that defines the item.
    fn resolve(&self, path: &ModPath, depth: usize) -> ModPath {
        let mut module: ModPath = Vec::new();
        for (k, segment) in path.iter().enumerate() {
            let mut child = module.clone();
            child.push(segment.clone());
            if self.is_module(&child) {
                module = child;
                continue;
            }
            if depth > 8 {
                break;
            }
            let Some(m) = self.modules.get(&module) else {
                break;
            };
            if let Some(source) = m.reexports.get(segment) {
                if let Some(mut target) = self.absolute(&module, source) {
                    target.extend(path[k + 1..].iter().cloned());
                    return self.resolve(&target, depth + 1);
                }
            }
            for glob in &m.globs {
                let Some(source) = self.absolute(&module, glob) else {
                    continue;
                };
                let source = self.resolve(&source, depth + 1);
                let defines = self.modules.get(&source).is_some_and(|s| {
                    s.items.contains(segment) || s.reexports.contains_key(segment)
                });
                if defines {
                    let mut target = source;
                    target.extend(path[k..].iter().cloned());
                    return self.resolve(&target, depth + 1);
                }
            }
            break;
        }
        module
    }

    /// File-level edges: module → modules it imports (never itself).
    fn edges(&self) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
        let mut edges = BTreeMap::new();
        for (path, m) in &self.modules {
            let targets: BTreeSet<ModPath> = m
                .uses
                .iter()
                .filter_map(|u| self.absolute(path, u))
                .map(|abs| self.resolve(&abs, 0))
                .filter(|t| t != path && !t.is_empty())
                .collect();
            edges.insert(path.clone(), targets);
        }
        edges
    }
}

// ---------------------------------------------------------------------------------------
// Cycles
// ---------------------------------------------------------------------------------------

/// Strongly connected components with more than one node (Tarjan).
fn cycles<N: Ord + Clone>(graph: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct State<N> {
        index: HashMap<usize, usize>,
        low: HashMap<usize, usize>,
        stack: Vec<usize>,
        on_stack: BTreeSet<usize>,
        next: usize,
        found: Vec<Vec<N>>,
    }
    let nodes: Vec<N> = graph
        .keys()
        .chain(graph.values().flatten())
        .cloned()
        .collect::<BTreeSet<N>>()
        .into_iter()
        .collect();
    let id: BTreeMap<&N, usize> = nodes.iter().enumerate().map(|(i, n)| (n, i)).collect();
    let adj: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            graph
                .get(n)
                .map_or(vec![], |s| s.iter().map(|t| id[t]).collect())
        })
        .collect();
    fn visit<N: Clone>(v: usize, adj: &[Vec<usize>], nodes: &[N], s: &mut State<N>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in &adj[v] {
            if !s.index.contains_key(&w) {
                visit(w, adj, nodes, s);
                let low = s.low[&v].min(s.low[&w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(&w) {
                let low = s.low[&v].min(s.index[&w]);
                s.low.insert(v, low);
            }
        }
        if s.low[&v] == s.index[&v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(&w);
                component.push(nodes[w].clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in 0..nodes.len() {
        if !state.index.contains_key(&v) {
            visit(v, &adj, &nodes, &mut state);
        }
    }
    state.found
}

fn show(path: &ModPath) -> String {
    if path.is_empty() {
        "crate".into()
    } else {
        path.join("::")
    }
}

fn server_crate() -> Crate {
    Crate::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

fn import_cycles(krate: &Crate) -> Vec<String> {
    let edges = krate.edges();
    let mut problems = Vec::new();
    // A cycle between files shows again at every shallower depth: report each set once,
    // at its deepest.
    let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
    let deepest = edges.keys().map(Vec::len).max().unwrap_or(1);
    for depth in (1..=deepest).rev() {
        let mut collapsed: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
        for (from, targets) in &edges {
            let a: ModPath = from.iter().take(depth).cloned().collect();
            for to in targets {
                let b: ModPath = to.iter().take(depth).cloned().collect();
                if a != b {
                    collapsed.entry(a.clone()).or_default().insert(b);
                }
            }
        }
        for component in cycles(&collapsed) {
            let mut names: Vec<String> = component.iter().map(show).collect();
            names.sort();
            if !reported.insert(names.clone()) {
                continue;
            }
            let within = |p: &ModPath, q: &ModPath| p.iter().take(depth).eq(q.iter().take(depth));
            let mut detail = Vec::new();
            for (from, targets) in &edges {
                let Some(a) = component.iter().find(|a| within(from, a)) else {
                    continue;
                };
                for to in targets {
                    if component.iter().any(|b| b != a && within(to, b)) {
                        detail.push(format!("{} -> {}", show(from), show(to)));
                    }
                }
            }
            problems.push(format!(
                "cycle at depth {depth}: {{{}}}\n    {}",
                names.join(", "),
                detail.join("\n    ")
            ));
        }
    }
    problems
}

#[test]
fn no_import_cycle_between_files_or_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    for src in ["src", "crates/loadgen/src"] {
        for problem in import_cycles(&Crate::read(&root.join(src))) {
            problems.push(format!("{src}: {problem}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn layers_import_only_downward() {
    let krate = server_crate();
    let allowed: HashMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut problems = Vec::new();
    for (from, targets) in krate.edges() {
        let Some(top) = from.first() else {
            continue; // lib.rs: the module map
        };
        let Some(may) = allowed.get(top.as_str()) else {
            problems.push(format!("{}: top-level module not in LAYERS", show(&from)));
            continue;
        };
        for to in targets {
            let target = to[0].as_str();
            if target != top && !may.contains(&target) {
                let file = &krate.modules[&from].file;
                problems.push(format!(
                    "{} ({}) imports {}",
                    show(&from),
                    file.display(),
                    show(&to)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_cycles_aliases_and_test_code() {
    let src = r#"
        use crate::a::{b::C, d as e};
        pub use self::inner::Thing;
        fn f() { let x = super::g::h(); let s = "crate::fake::path"; } // crate::comment
        #[cfg(test)]
        mod tests { use crate::test_only::X; }
    "#;
    let m = parse_module(PathBuf::from("x.rs"), src);
    let uses: Vec<String> = m.uses.iter().map(|p| p.join("::")).collect();
    assert_eq!(uses, ["crate::a::b::C", "crate::a::d", "super::g::h"]);
    assert_eq!(m.reexports["Thing"].join("::"), "self::inner::Thing");
    let mut graph = BTreeMap::new();
    graph.insert(1, BTreeSet::from([2]));
    graph.insert(2, BTreeSet::from([3]));
    graph.insert(3, BTreeSet::from([1]));
    graph.insert(4, BTreeSet::from([1]));
    let found = cycles(&graph);
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([&1, &2, &3])
    );
}
