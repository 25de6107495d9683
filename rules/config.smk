localrules:
    resolve_config,


# Every job reads this one file, so defaults and `--config` overrides reach the CLI; a changed
# config changes the rule's params, which re-runs it and everything downstream.
rule resolve_config:
    output:
        f"{R}/config.resolved.yaml",
    params:
        config=resolved_config_json(),
    log:
        log_path("resolve_config"),
    benchmark:
        benchmark_path("resolve_config")
    conda:
        "../envs/oncobench.yaml"
    shell:
        "oncobench config --set {params.config:q} --out {output} > {log} 2>&1"
