localrules:
    track_run,


# The only MLflow writer: runs once, locally, after everything else (cluster jobs never log).
rule track_run:
    input:
        unpack(model_extras),
        config=CONFIG_FILE,
        summary=f"{R}/summary/summary.md",
        verification=verification_dirs,
        metrics=metric_files,
    output:
        f"{R}/tracking/mlflow_run.json",
    params:
        results=results_root,
        snakemake_version=SNAKEMAKE_VERSION,
    log:
        log_path("track_run"),
    benchmark:
        benchmark_path("track_run")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../envs/oncobench.yaml"
    shell:
        "oncobench track --config {input.config} --threads {threads} --results-dir {params.results} --snakemake-version {params.snakemake_version}"
        " --out {output} > {log} 2>&1"
