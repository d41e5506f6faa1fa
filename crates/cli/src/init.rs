//! `nimbus init TEMPLATE [DIR]`: a working function and its manifest, for
//! each kind Nimbus runs. The templates live in `crates/cli/templates/` and
//! are compiled into the binary; `{{name}}` in them becomes the function's
//! name, `{{crate}}` the Cargo package name and `{{crate_file}}` the stem of
//! a Cargo library's output file.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// One file of a template: its path in the new project, its text, and
/// whether it is executable.
struct File {
    path: &'static str,
    text: &'static str,
    executable: bool,
}

/// A template: its name, what it makes, and its files.
pub struct Template {
    pub name: &'static str,
    pub about: &'static str,
    files: &'static [File],
}

macro_rules! file {
    ($dir:literal, $path:literal) => {
        File {
            path: $path,
            text: include_str!(concat!("../templates/", $dir, "/", $path)),
            executable: false,
        }
    };
    ($dir:literal, $path:literal, executable) => {
        File {
            path: $path,
            text: include_str!(concat!("../templates/", $dir, "/", $path)),
            executable: true,
        }
    };
}

const GITIGNORE: File = File {
    path: ".gitignore",
    text: include_str!("../templates/gitignore"),
    executable: false,
};

/// Every template, in the order `nimbus init --help` lists them.
pub const TEMPLATES: &[Template] = &[
    Template {
        name: "rust-http",
        about: "a Rust wasi:http component (wstd), built with cargo for wasm32-wasip2",
        files: &[
            file!("rust-http", "nimbus.yaml"),
            file!("rust-http", "Cargo.toml"),
            file!("rust-http", "src/lib.rs"),
            GITIGNORE,
        ],
    },
    Template {
        name: "rust-cgi",
        about: "a Rust CGI-style function (WASI preview 1), built with cargo for wasm32-wasip1",
        files: &[
            file!("rust-cgi", "nimbus.yaml"),
            file!("rust-cgi", "Cargo.toml"),
            file!("rust-cgi", "src/main.rs"),
            GITIGNORE,
        ],
    },
    Template {
        name: "python",
        about: "a Python Lambda-style handler (src/app.py)",
        files: &[
            file!("python", "nimbus.yaml"),
            file!("python", "src/app.py"),
            GITIGNORE,
        ],
    },
    Template {
        name: "node",
        about: "a Node.js Lambda-style handler (src/index.mjs)",
        files: &[
            file!("node", "nimbus.yaml"),
            file!("node", "src/index.mjs"),
            GITIGNORE,
        ],
    },
    Template {
        name: "exec",
        about: "any executable, CGI-style (src/bootstrap, a shell script)",
        files: &[
            file!("exec", "nimbus.yaml"),
            file!("exec", "src/bootstrap", executable),
            GITIGNORE,
        ],
    },
];

/// The template names, for the error that lists them.
pub fn names() -> String {
    TEMPLATES
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The function name for a project directory: its last component in lower
/// case, with every other character than `a-z0-9` turned into `-`.
pub fn name_for(dir: &Path) -> Option<String> {
    let base = std::path::absolute(dir).ok()?;
    let base = base.file_name()?.to_string_lossy().to_lowercase();
    let mut name = String::new();
    for c in base.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_end_matches('-');
    let name = &name[..name.len().min(nimbus_api::names::MAX_NAME_BYTES)];
    let name = name.trim_end_matches('-');
    nimbus_api::FunctionName::new(name.to_owned())
        .ok()
        .map(|n| n.to_string())
}

/// Writes the template into `dir` (created if needed) for the function
/// `name`; refuses to overwrite any file. Returns the files written.
pub fn create(template: &str, dir: &Path, name: &str) -> anyhow::Result<Vec<PathBuf>> {
    let Some(t) = TEMPLATES.iter().find(|t| t.name == template) else {
        bail!(
            "there is no template {template:?}; use one of {} (nimbus init --help describes them)",
            names()
        );
    };
    nimbus_api::FunctionName::new(name.to_owned())
        .map_err(|e| anyhow::anyhow!("{e} (pass another with --name)"))?;
    // Cargo package names cannot start with a digit; function names can.
    let krate = if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("fn-{name}")
    } else {
        name.to_owned()
    };
    let crate_file = krate.replace('-', "_");
    for f in t.files {
        let path = dir.join(f.path);
        if path.exists() || path.is_symlink() {
            bail!(
                "{} already exists; nimbus init never overwrites a file: choose an empty or new directory",
                path.display()
            );
        }
    }
    let mut written = Vec::new();
    for f in t.files {
        let path = dir.join(f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create the directory {}", parent.display()))?;
        }
        let text = f
            .text
            .replace("{{name}}", name)
            .replace("{{crate_file}}", &crate_file)
            .replace("{{crate}}", &krate);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        if f.executable {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("make {} executable", path.display()))?;
        }
        written.push(path);
    }
    Ok(written)
}

/// `nimbus init`.
pub fn run(args: crate::InitArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let name = match args.name {
        Some(n) => n,
        None => name_for(&dir).with_context(|| {
            format!(
                "cannot make a function name from the directory {}; pass one with --name",
                dir.display()
            )
        })?,
    };
    let files = create(&args.template, &dir, &name)?;
    println!(
        "created {} function {name} in {}:",
        args.template,
        dir.display()
    );
    for f in &files {
        println!("  {}", f.strip_prefix(&dir).unwrap_or(f).display());
    }
    let cd = match &args.dir {
        Some(d) => format!("cd {} && ", d.display()),
        None => String::new(),
    };
    println!("next: {cd}nimbus dev      (or: nimbus build && nimbus deploy)");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_name_becomes_a_valid_function_name() {
        assert_eq!(
            name_for(Path::new("/x/My_Func 2")).as_deref(),
            Some("my-func-2")
        );
        assert_eq!(name_for(Path::new("/x/--a--b--")).as_deref(), Some("a-b"));
        assert_eq!(name_for(Path::new("/x/___")), None);
        let long = format!("/x/{}", "a".repeat(100));
        assert_eq!(name_for(Path::new(&long)).map(|n| n.len()), Some(63));
    }

    #[test]
    fn every_template_has_a_manifest_that_parses_with_its_placeholders_filled() {
        for t in TEMPLATES {
            let dir = tempfile::tempdir().expect("tempdir");
            let files = create(t.name, dir.path(), "9lives").expect("create");
            assert!(files.iter().any(|f| f.ends_with("nimbus.yaml")));
            let text = std::fs::read_to_string(dir.path().join("nimbus.yaml")).expect("read");
            assert!(!text.contains("{{"), "{}: unfilled placeholder", t.name);
            let m = nimbus_api::manifest::Manifest::parse(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", t.name));
            assert!(m.functions.keys().any(|k| k.as_str() == "9lives"));
            // A second init into the same directory overwrites nothing.
            let e = create(t.name, dir.path(), "9lives")
                .unwrap_err()
                .to_string();
            assert!(e.contains("never overwrites"), "{e}");
        }
    }

    #[test]
    fn an_unknown_template_lists_the_known_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = create("cobol", dir.path(), "x").unwrap_err().to_string();
        assert!(e.contains("rust-http, rust-cgi, python, node, exec"), "{e}");
    }
}
