//! Prints the `StreamJob` CustomResourceDefinition as YAML (`crds/streamjob.yaml`).

fn main() {
    print!("{}", weir_controller::crd_yaml());
}
