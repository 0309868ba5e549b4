//! Prints a CustomResourceDefinition as YAML: `StreamJob` (`crds/streamjob.yaml`),
//! or with the argument `streamtable`, `StreamTable` (`crds/streamtable.yaml`).

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("streamtable") => print!("{}", weir_controller::table_crd_yaml()),
        _ => print!("{}", weir_controller::crd_yaml()),
    }
}
