# Inverse verification (both models): negative controls once per release, then one verify job per
# confounding strength that combines its checks with the controls into the branch's verdict.


rule verify_controls:
    input:
        config=CONFIG_FILE,
    output:
        f"{R}/verification/controls.parquet",
    log:
        log_path("verify_controls"),
    benchmark:
        benchmark_path("verify_controls")
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    conda:
        "../envs/oncobench.yaml"
    shell:
        "oncobench verify-controls --config {input.config} --threads {threads} --out {output} > {log} 2>&1"


def _verify_figure(name, title):
    return report(
        f"{R}/verification/gamma-{{gamma}}/{name}.png",
        caption=f"../workflow/report/{name}.rst",
        category="Verification",
        labels={"figure": title, "gamma": "{gamma}"},
    )


rule verify_simulator:
    input:
        config=CONFIG_FILE,
        cohort=cohort_shards,
        trajectories=trajectory_shards,
        controls=verify_controls_input,
    output:
        checks=f"{R}/verification/gamma-{{gamma}}/checks.parquet",
        parameters=f"{R}/verification/gamma-{{gamma}}/parameters.parquet",
        ranks=f"{R}/verification/gamma-{{gamma}}/sbc_ranks.parquet",
        coverage=f"{R}/verification/gamma-{{gamma}}/coverage.parquet",
        tarp=f"{R}/verification/gamma-{{gamma}}/tarp.parquet",
        realism=f"{R}/verification/gamma-{{gamma}}/realism.parquet",
        predictions=f"{R}/verification/gamma-{{gamma}}/predictions.parquet",
        controls=f"{R}/verification/gamma-{{gamma}}/controls.parquet",
        verdict=f"{R}/verification/gamma-{{gamma}}/verdict.parquet",
        sbc_figure=_verify_figure("sbc_ranks", "SBC rank histograms"),
        coverage_figure=_verify_figure("coverage", "HPD expected coverage"),
        recovery_figure=_verify_figure("recovery", "parameter recovery"),
        realism_figure=_verify_figure("realism", "realism C2ST"),
    params:
        out_dir=lambda wc: f"{R}/verification/gamma-{wc.gamma}",
        controls=lambda wc, input: f"--controls {input.controls}" if input.controls else "",
    log:
        log_path("verify_simulator", "gamma-{gamma}"),
    benchmark:
        benchmark_path("verify_simulator", "gamma-{gamma}")
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    conda:
        "../envs/oncobench.yaml"
    shell:
        "oncobench verify --config {input.config} --threads {threads} --gamma {wildcards.gamma} --cohort {input.cohort}"
        " --trajectories {input.trajectories} {params.controls} --out-dir {params.out_dir} > {log} 2>&1"
