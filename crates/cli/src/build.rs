//! `nimbus build`: runs the `build.command` of a manifest's functions, in
//! the manifest's directory, as `nimbus dev` does before each deploy.

use anyhow::{Context, bail};
use nimbus_api::manifest::{BuildSpec, Manifest};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A manifest and the directory its paths are relative to.
pub struct Project {
    pub manifest_path: PathBuf,
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Project {
    pub fn load(manifest_path: &Path) -> anyhow::Result<Project> {
        let text = std::fs::read_to_string(manifest_path).with_context(|| {
            format!(
                "read the manifest {} (create one with `nimbus init TEMPLATE`)",
                manifest_path.display()
            )
        })?;
        let manifest = Manifest::parse(&text)
            .map_err(|e| anyhow::anyhow!("invalid manifest {}: {e}", manifest_path.display()))?;
        let dir = match manifest_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Project {
            manifest_path: manifest_path.to_path_buf(),
            dir,
            manifest,
        })
    }

    /// The functions that have a build step, with it.
    pub fn builds(&self) -> impl Iterator<Item = (&str, &BuildSpec)> {
        self.manifest
            .functions
            .iter()
            .filter_map(|(n, f)| f.build.as_ref().map(|b| (n.as_str(), b)))
    }
}

/// Runs one function's build command with the terminal as its output.
pub async fn run(project: &Project, name: &str, build: &BuildSpec) -> anyhow::Result<()> {
    if build.command.trim().is_empty() {
        bail!(
            "functions.{name}.build.command is empty in {}: write the command that builds the code, e.g. cargo build --release",
            project.manifest_path.display()
        );
    }
    eprintln!("building {name}: {}", build.command);
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&build.command)
        .current_dir(&project.dir)
        .stdin(std::process::Stdio::null())
        .status()
        .await
        .with_context(|| format!("start the build of {name} (sh -c {:?})", build.command))?;
    if !status.success() {
        bail!(
            "the build of {name} failed ({}): {}",
            match status.code() {
                Some(c) => format!("exit status {c}"),
                None => "killed by a signal".to_owned(),
            },
            build.command
        );
    }
    Ok(())
}

pub async fn build(args: crate::BuildArgs) -> anyhow::Result<ExitCode> {
    let project = Project::load(&args.file)?;
    for n in &args.names {
        match project
            .manifest
            .functions
            .iter()
            .find(|(k, _)| k.as_str() == n)
        {
            None => bail!(
                "{} has no function {n:?}; it has {}",
                args.file.display(),
                project
                    .manifest
                    .functions
                    .keys()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some((_, f)) if f.build.is_none() => bail!(
                "functions.{n} in {} has no build step (add build: {{ command: ... }})",
                args.file.display()
            ),
            Some(_) => {}
        }
    }
    let mut built = 0;
    for (name, b) in project.builds() {
        if args.names.is_empty() || args.names.iter().any(|n| n == name) {
            run(&project, name, b).await?;
            built += 1;
        }
    }
    if built == 0 {
        eprintln!(
            "no function of {} has a build step: nothing to build",
            args.file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
