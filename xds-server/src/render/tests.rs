//! Snapshots of the rendered manifests (`tests/data/render/*.yaml` rendered for both targets,
//! kept next to them as `*.istio.out.yaml` / `*.envoy-gateway.out.yaml`; `AIMESH_UPDATE_SNAPSHOTS=1`
//! rewrites them) and the properties the snapshots alone would not make obvious.

use std::path::{Path, PathBuf};

use super::*;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/render")
}

fn opts() -> Options {
    Options {
        namespace: "ai".into(),
        wasm_dir: "/etc/aimesh/wasm".into(),
        gateway: "gw".into(),
    }
}

fn load(path: &Path) -> Gateway {
    crate::validate::load_file(path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
}

fn inputs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".gateway.yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn snapshots_match() {
    let update = std::env::var("AIMESH_UPDATE_SNAPSHOTS").is_ok();
    let mut stale = vec![];
    for input in inputs() {
        let gw = load(&input);
        let stem = input
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".yaml", "");
        for (target, t) in [
            (Target::Istio, "istio"),
            (Target::EnvoyGateway, "envoy-gateway"),
        ] {
            let out = to_yaml(&render(&gw, target, &opts()).unwrap()).unwrap();
            let snap = data().join(format!("{stem}.{t}.out.yaml"));
            if update {
                std::fs::write(&snap, &out).unwrap();
            } else if std::fs::read_to_string(&snap).ok().as_deref() != Some(out.as_str()) {
                stale.push(snap.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale (AIMESH_UPDATE_SNAPSHOTS=1 cargo test -p aimesh-xds render): {stale:?}"
    );
}

#[test]
fn filter_configs_are_the_ads_paths_own() {
    let gw = load(&data().join("minimal.gateway.yaml"));
    let docs = render(&gw, Target::Istio, &opts()).unwrap();
    let ef = docs.iter().find(|d| d["kind"] == "EnvoyFilter").unwrap();
    let patches = ef["spec"]["configPatches"].as_array().unwrap();
    let configs = crate::filters::configs(&gw, false).unwrap();
    assert_eq!(patches.len(), configs.len());
    let keys = docs
        .iter()
        .find(|d| d["metadata"]["name"] == VIRTUAL_KEYS_SECRET)
        .unwrap()["stringData"][VIRTUAL_KEYS_ENV]
        .as_str()
        .unwrap();
    for (p, (name, json)) in patches.iter().zip(&configs) {
        let cfg = &p["patch"]["value"]["typed_config"]["config"];
        assert_eq!(cfg["name"], format!("aimesh.{name}"));
        let rendered = cfg["configuration"]["value"].as_str().unwrap();
        if *name == "auth" {
            // The same config once the keys the Secret holds are back in place of `keys_env`.
            let mut v: Value = serde_json::from_str(rendered).unwrap();
            assert_eq!(v["keys_env"], VIRTUAL_KEYS_ENV);
            v.as_object_mut().unwrap().remove("keys_env");
            v["keys"] = serde_json::from_str(keys).unwrap();
            assert_eq!(v, serde_json::from_str::<Value>(json).unwrap());
            let env = &cfg["vm_config"]["environment_variables"]["host_env_keys"];
            assert!(env.as_array().unwrap().contains(&json!(VIRTUAL_KEYS_ENV)));
            assert!(!rendered.contains("sha256:"));
        } else {
            assert_eq!(rendered, json.as_str());
        }
        assert_eq!(cfg["allow_on_headers_stop_iteration"], true);
        assert_eq!(cfg["failure_policy"], "FAIL_RELOAD");
        let file = format!("/etc/aimesh/wasm/aimesh_{}.wasm", name.replace('-', "_"));
        assert_eq!(cfg["vm_config"]["code"]["local"]["filename"], file.as_str());
    }
}

#[test]
fn file_keys_reach_header_auth_through_the_proxy_environment() {
    let gw = load(&data().join("example-targets-only.gateway.yaml"));
    let docs = render(&gw, Target::EnvoyGateway, &opts()).unwrap();
    let secret = &docs[0];
    assert_eq!(secret["kind"], "Secret");
    let names: Vec<&String> = secret["stringData"].as_object().unwrap().keys().collect();
    assert!(
        names.iter().any(|n| *n == "AIMESH_FILE_AZURE_OPENAI_KEY"),
        "{names:?}"
    );
    assert!(names.iter().any(|n| *n == "OPENAI_API_KEY"), "{names:?}");
    assert!(secret["stringData"]
        .as_object()
        .unwrap()
        .values()
        .all(|v| v == ""));
    let text = to_yaml(&docs).unwrap();
    assert!(
        !text.contains("${file:"),
        "a file reference left in the manifests"
    );
    assert!(text.contains("${env:AIMESH_FILE_AZURE_OPENAI_KEY}"));
}

#[test]
fn what_a_mesh_cannot_carry_is_refused_by_field() {
    let mut gw = load(&data().join("minimal.gateway.yaml"));
    gw.pii.hash_key = Some(crate::model::SecretRef("${file:/k}".into()));
    let e = render(&gw, Target::Istio, &opts()).unwrap_err();
    assert!(e.starts_with("pii.hash_key: "), "{e}");
}

#[test]
fn fallbacks_get_the_ads_aggregate_clusters_and_one_route_per_target() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gateway.yaml");
    let gw = load(&example);
    for target in [Target::Istio, Target::EnvoyGateway] {
        let text = to_yaml(&render(&gw, target, &opts()).unwrap()).unwrap();
        // Members once each, then one aggregate per entry of `smart`; `cheap` has none.
        for name in ["provider.openai", "fallback.smart.0", "fallback.smart.2"] {
            assert!(text.contains(&format!("name: {name}\n")), "{name}");
        }
        assert!(!text.contains("fallback.cheap"));
        assert_eq!(text.matches("name: aimesh-fallback\n").count(), 1);
    }
}

#[test]
fn file_env_names_are_environment_names() {
    assert_eq!(
        file_env_name("/run/secrets/azure-openai-key"),
        "AIMESH_FILE_AZURE_OPENAI_KEY"
    );
    assert_eq!(file_env_name("/k.txt"), "AIMESH_FILE_K_TXT");
}
