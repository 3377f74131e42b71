//! Finding scenarios: a file, a folder of `*.ron` files, or a name in the built-in library.
//!
//! Owns: [`load`] (a path to a file or folder; a folder's `*.ron` files, not its sub-folders, in
//! name order, so `regressions/` is not part of a library run), [`resolve`] (a path or a bare
//! scenario name looked up in [`library_dir`]).

use std::path::{Path, PathBuf};

use crate::scenario::{Scenario, ScenarioError};

/// The folder of the built-in scenarios (this crate's directory).
pub fn library_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Loads the scenario file at `path`, or every `*.ron` file directly inside the folder `path`.
pub fn load(path: &Path) -> Result<Vec<(PathBuf, Scenario)>, ScenarioError> {
    if !path.is_dir() {
        return Ok(vec![(path.to_path_buf(), Scenario::load(path)?)]);
    }
    let io = |source| ScenarioError::Io { path: path.display().to_string(), source };
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|file| file.is_file() && file.extension().is_some_and(|ext| ext == "ron"))
        .collect();
    files.sort();
    files.into_iter().map(|file| Scenario::load(&file).map(|scenario| (file, scenario))).collect()
}

/// `name_or_path` as an existing path, else as `<library_dir>/<name>.ron`.
pub fn resolve(name_or_path: &str) -> PathBuf {
    let path = PathBuf::from(name_or_path);
    if path.exists() {
        return path;
    }
    library_dir().join(format!("{name_or_path}.ron"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_loads_and_every_scenario_is_named_after_its_file() {
        let scenarios = load(&library_dir()).unwrap();
        assert!(scenarios.len() >= 15, "{} scenarios", scenarios.len());
        for (path, scenario) in &scenarios {
            let stem = path.file_stem().unwrap().to_string_lossy();
            assert_eq!(stem, scenario.name, "{}", path.display());
            assert!(!scenario.description.is_empty(), "{} has no description", scenario.name);
        }
    }

    #[test]
    fn a_bare_name_resolves_into_the_library() {
        let path = resolve("partition-heal");
        assert!(path.ends_with("partition-heal.ron"));
        assert_eq!(load(&path).unwrap()[0].1.name, "partition-heal");
    }
}
