"""Every sentence of the report, in English and Chinese, side by side (``key: (en, zh)``).

Entries are HTML fragments with ``{name}`` placeholders: numbers of this run and MathML
formulas from :mod:`loralab.report_math`. :func:`t` picks the language and fills them in.
The extension chapters' texts are in :mod:`loralab.report_text_ext`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LANGS", "T", "figure_labels", "t"]

LANGS: tuple[str, ...] = ("en", "zh")

T: dict[str, tuple[str, str]] = {
    # ---- page chrome -------------------------------------------------------------------
    "title": ("LoRA parameter injection and rank decomposition, visualised",
              "LoRA 参数注入与秩分解可视化"),
    "subtitle": ("A classroom report built by loralab from this run's numbers",
                 "由 loralab 根据本次运行的数值生成的课堂报告"),
    "meta": ("preset <b>{preset}</b> · seed {seed} · d = {d} · α = {alpha} · torch {torch} · "
             "built {date} in {secs} s",
             "预设 <b>{preset}</b> · 随机种子 {seed} · d = {d} · α = {alpha} · torch {torch} · "
             "生成于 {date}，用时 {secs} 秒"),
    "toc": ("Contents", "目录"),
    "cjk_hint": ("", "图中文字为英文：{hint}"),
    "missing": ("Not in this report: {why}", "本报告未包含此部分：{why}"),
    "fig": ("Figure", "图"),
    # ---- chapter titles ----------------------------------------------------------------
    "h_overview": ("1. Overview", "一、概述"),
    "h_flow": ("2. What the script does, step by step", "二、脚本流程"),
    "h_api": ("3. Classes and functions", "三、类与函数文档"),
    "h_math": ("4. The mathematics", "四、数学原理"),
    "h_running": ("5. Running it and the plots", "五、运行与可视化"),
    "h_faq": ("6. Frequently asked questions", "六、常见问题"),
    "h_ext": ("7. Extensions", "七、扩展示例"),
    # ---- 1. overview -------------------------------------------------------------------
    "ov_p1": (
        "LoRA (Low-Rank Adaptation) adapts a large pretrained model to a new task without "
        "changing its weights. A chosen linear layer keeps its weight W₀ <b>frozen</b> and "
        "learns a small update ΔW whose rank is at most r:",
        "LoRA（Low-Rank Adaptation，低秩适配）在<b>不改动</b>预训练权重的前提下让大模型适配新任务："
        "被选中的线性层冻结原权重 W₀，只学习一个秩不超过 r 的小增量 ΔW："),
    "ov_p2": (
        "Only A and B are trained: r·(d_in + d_out) numbers instead of d_in·d_out. In this "
        "run d = {d}; at r = 8 that is <b>{p8}</b> trainable numbers instead of {d2} "
        "(<b>{pct8}</b> of the full matrix).",
        "只训练 A 和 B：可训练参数为 r·(d_in + d_out) 个，而不是 d_in·d_out 个。本次运行 "
        "d = {d}；r = 8 时只需 <b>{p8}</b> 个可训练参数，而全量矩阵有 {d2} 个（仅占 <b>{pct8}</b>）"
        "。"),
    "ov_p3": (
        "The seed script draws a random W₀ of shape ({d}, {d}), adds a random rank-r update "
        "for each r in {ranks} and plots a “reconstruction error” per rank. This page reruns "
        "it, explains what that number really is, and then does what the seed's section 8 "
        "proposes: the SVD optimum, the spectrum, heatmaps, learned fits and a real "
        "fine-tuning of a tiny language model.",
        "种子脚本随机生成形状为 ({d}, {d}) 的 W₀，对 {ranks} 中的每个秩 r 加上一个随机的秩 r 增量，"
        "并画出每个秩的“重建误差”。本页重新运行该脚本，解释这个数字到底是什么，然后完成种子文档第八"
        "节"
        "提出的扩展：SVD 最优近似、奇异值谱、热力图、梯度学习的拟合，以及一个小型语言模型上的真实微"
        "调。"),
    "ov_run_h": ("This run in a few lines", "本次运行要点"),
    "ov_run_seed": (
        "The seed's curve falls from {e_first} (r = {r_first}) to {e_last} (r = {r_last}) "
        "because ΔW is scaled by α/r: every point is within {maxdev} of α·d/√r.",
        "种子的曲线从 {e_first}（r = {r_first}）降到 {e_last}（r = {r_last}），原因是 ΔW 乘了 "
        "α/r：每个点与 α·d/√r 的偏差都不超过 {maxdev}。"),
    "ov_run_opt": (
        "The best any rank-{r_last} matrix can do for the random W₀ still leaves "
        "<b>{opt_last}</b> of ‖W₀‖_F: a random matrix is not low-rank.",
        "对随机的 W₀，任何秩 {r_last} 矩阵能做到的最好结果仍剩下 ‖W₀‖_F 的 <b>{opt_last}</b>："
        "随机矩阵不是低秩的。"),
    "ov_run_struct": (
        "A structured update ({k} directions of decreasing strength plus {noise} noise) is "
        "captured by rank {k} up to <b>{struct_k}</b> of its norm: this is the bet LoRA makes "
        "about fine-tuning updates.",
        "而一个结构化的增量（{k} 个强度递减的方向加 {noise} 的噪声）用秩 {k} 近似后只剩 "
        "<b>{struct_k}</b> 的范数：这正是 LoRA 对微调增量所下的赌注。"),
    "ov_traps_h": ("Two traps in the seed, and how to read them",
                   "种子文档中的两个陷阱，以及正确的理解"),
    "ov_trap1": (
        "<b>The seed's “error” is just the size of the random update.</b> "
        "‖W₀ − (W₀ + ΔW)‖_F = ‖ΔW‖_F: W₀ cancels. It falls with r only because of the α/r "
        "scale, ‖ΔW‖_F ≈ α·d/√r, and says nothing about what rank r can express. "
        "What a rank can express is the SVD optimum (<a href=\"#math-error\">§4</a>).",
        "<b>种子的“误差”只是随机增量的大小。</b>‖W₀ − (W₀ + ΔW)‖_F = ‖ΔW‖_F：W₀ 被抵消了。"
        "它随 r 下降只是因为 α/r 缩放，‖ΔW‖_F ≈ α·d/√r，与秩 r 的表达能力无关。"
        "秩 r 能表达多少，要看 SVD 最优近似（见<a href=\"#math-error\">第四节</a>）。"),
    "ov_trap2": (
        "<b>A and B swap names in the seed's section 4.</b> The code (and this page, the LoRA "
        "paper and PEFT) uses A: (r, d_in), B: (d_out, r), ΔW = (α/r)·BA, so A is the matrix "
        "that meets the input first. The seed's section 4 writes A: (d, r), B: (r, d), "
        "ΔW = (α/r)·AB: the same product with the names exchanged.",
        "<b>种子文档第四节把 A 和 B 的名字对调了。</b>代码（以及本页、LoRA 论文和 PEFT）的约定是 "
        "A: (r, d_in)、B: (d_out, r)、ΔW = (α/r)·BA，即 A 是先与输入相乘的矩阵。种子文档第四节写的"
        "是 "
        "A: (d, r)、B: (r, d)、ΔW = (α/r)·AB：乘积相同，只是名字互换。"),
    # ---- 2. flow -----------------------------------------------------------------------
    "fl_intro": ("The seed's six steps, each with this run's values and the loralab code "
                 "that does it:",
                 "种子脚本的六个步骤，附本次运行的数值和对应的 loralab 代码："),
    "fl_1": ("<b>Configuration.</b> <code>LoraConfig(hidden_size={d}, rank_candidates={ranks}, "
             "alpha={alpha})</code>; loralab validates it (a rank above d is refused).",
             "<b>配置读取。</b><code>LoraConfig(hidden_size={d}, rank_candidates={ranks}, "
             "alpha={alpha})</code>；loralab 会校验配置（大于 d 的秩会被拒绝）。"),
    "fl_2": ("<b>Random weight.</b> W₀ ~ N(0, 1) of shape ({d}, {d}); here ‖W₀‖_F = {w0} ≈ d. "
             "A private <code>torch.Generator</code> seeded with {seed} draws it, so the same "
             "seed gives the same numbers as the seed's script.",
             "<b>随机权重。</b>W₀ ~ N(0, 1)，形状 ({d}, {d})；本次 ‖W₀‖_F = {w0} ≈ d。"
             "由种子为 {seed} 的独立 <code>torch.Generator</code> 生成，同一种子得到与种子脚本相同"
             "的数值。"),
    "fl_3": ("<b>Low-rank update.</b> For each r: B: ({d}, r) and A: (r, {d}) from N(0, 1), "
             "then ΔW = (α/r)·BA, which has rank at most r.",
             "<b>低秩构造。</b>对每个 r：从 N(0, 1) 采样 B: ({d}, r) 与 A: (r, {d})，"
             "令 ΔW = (α/r)·BA，其秩不超过 r。"),
    "fl_4": ("<b>Error.</b> ‖W₀ − (W₀ + ΔW)‖_F, which equals ‖ΔW‖_F (<a href=\"#traps\">trap 1</a>)"
             ". loralab also "
             "records its theory α·d/√r and the best rank-r error ‖W₀ − W₀,r‖_F.",
             "<b>误差评估。</b>‖W₀ − (W₀ + ΔW)‖_F，它等于 ‖ΔW‖_F（<a href=\"#traps\">陷阱一</a>）。"
             "loralab 同时记录理论值 "
             "α·d/√r 和最佳秩 r 误差 ‖W₀ − W₀,r‖_F。"),
    "fl_5": ("<b>Plot.</b> <code>lora_rank_error.png</code>: the seed's curve beside its "
             "theory, and the SVD optimum (<a href=\"#running\">§5</a>).",
             "<b>可视化。</b><code>lora_rank_error.png</code>：种子的曲线及其理论值，以及 SVD 最优"
             "误差"
             "（见<a href=\"#running\">第五节</a>）。"),
    "fl_6": ("<b>Pseudo code.</b> LoRA injected into <code>nn.Linear</code>; it runs as is "
             "(<a href=\"#api\">§3</a>). The full library is <code>loralab.lora</code>.",
             "<b>伪代码。</b>向 <code>nn.Linear</code> 注入 LoRA，可直接运行（见"
             "<a href=\"#api\">第三节</a>）。完整实现在 <code>loralab.lora</code>。"),
    "fl_code": ("The whole flow in three lines of Python:", "整个流程只需三行 Python："),
    # ---- 3. classes and functions ------------------------------------------------------
    "api_cfg": ("The seed's configuration, with its names and defaults.",
                "种子脚本的配置，名称与默认值保持不变。"),
    "api_field": ("field", "字段"),
    "api_value": ("this run", "本次取值"),
    "api_meaning": ("meaning", "含义"),
    "api_f_d": ("d: the simulated weight is (d, d)", "d：模拟的权重形状为 (d, d)"),
    "api_f_r": ("the ranks r to try (each 1 ≤ r ≤ d)", "候选秩 r 列表（每个 1 ≤ r ≤ d）"),
    "api_f_a": ("LoRA scale α; the update is multiplied by α/r",
                "LoRA 缩放系数 α；增量乘以 α/r"),
    "api_sim": ("The seed's function: prints the per-rank table and saves "
                "<code>lora_rank_error.png</code>. Unlike the seed's, it also returns the "
                "numbers as a <code>DemoResult</code>.",
                "种子脚本的主函数：打印每个秩的误差表并保存 <code>lora_rank_error.png</code>。"
                "与原脚本不同，它还以 <code>DemoResult</code> 返回全部数值。"),
    "api_run": ("The computation alone: no printing, no files. Returns W₀'s singular values "
                "and one row per rank (‖ΔW‖_F, its theory, the SVD optimum, parameter counts).",
                "纯计算：不打印、不写文件。返回 W₀ 的奇异值和每个秩一行的结果（‖ΔW‖_F、理论值、"
                "SVD 最优误差、参数量）。"),
    "api_pseudo": ("Prints the code below: LoRA injected into <code>nn.Linear</code>. Read "
                   "the shapes: <code>lora_a</code> is A: (r, in_features) and "
                   "<code>lora_b</code> is B: (out_features, r) = 0 at start.",
                   "打印下面的代码：向 <code>nn.Linear</code> 注入 LoRA。注意形状："
                   "<code>lora_a</code> 是 A: (r, in_features)，<code>lora_b</code> 是 "
                   "B: (out_features, r)，初始为 0。"),
    "api_more_h": ("The rest of loralab used by this page", "本页用到的其他 loralab 接口"),
    "api_name": ("name", "名称"),
    "api_does": ("what it does", "作用"),
    # ---- 4. math -----------------------------------------------------------------------
    "m_h1": ("LoRA's low-rank update", "LoRA 的低秩增量"),
    "m_p1": ("The frozen weight W₀ gets an update of rank at most r; A and B are trained, "
             "W₀ is not. Shapes (LoRA paper and PEFT convention):",
             "冻结 W₀，只训练秩不超过 r 的增量；可训练的是 A 和 B。形状（LoRA 论文与 PEFT 的约定）"
             "："),
    "m_p2": ("In the forward pass ΔW is never formed; the input goes through A, then B:",
             "前向计算时不需要显式构造 ΔW：输入先乘 A，再乘 B："),
    "m_p3": ("Parameters: the update costs", "参数量："),
    "m_p4": ("LoRA starts with B = 0, so training starts exactly from the pretrained model:",
             "LoRA 初始化时 B = 0，因此训练从预训练模型本身出发："),
    "m_conv": ("<b>Trap 2, names.</b> The seed's section 4 writes", "<b>陷阱二：名字。</b>种子文档"
                                                                    "第四节写作"),
    "m_conv2": ("which is the same product with A and B exchanged. This page always uses "
                "A: (r, d_in), B: (d_out, r).",
                "这与上面的乘积相同，只是 A、B 的名字互换。本页始终使用 A: (r, d_in)、B: (d_out, r)"
                "。"),
    "m_h2": ("What the seed's “error” measures", "种子的“误差”衡量的是什么"),
    "m_e1": ("<b>Trap 1.</b> W₀ cancels:", "<b>陷阱一。</b>W₀ 被抵消了："),
    "m_e2": ("Each entry of BA is a sum of r products of independent unit normals, so its "
             "variance is r; there are d_out·d_in entries. Hence",
             "BA 的每个元素是 r 个独立标准正态乘积之和，方差为 r；共有 d_out·d_in 个元素。因此"),
    "m_e3": ("With this run's numbers:", "代入本次运行的数值："),
    "m_e4": ("At r = {r}: measured ‖ΔW‖_F = <b>{m}</b>, predicted {t} ± {s}. The curve falls "
             "because of α/r, not because a larger rank “reconstructs” anything.",
             "r = {r} 时：实测 ‖ΔW‖_F = <b>{m}</b>，理论 {t} ± {s}。曲线下降源于 α/r，"
             "而不是更大的秩“重建”了什么。"),
    "m_h3": ("Rank and reconstruction error", "秩与重建误差"),
    "m_ey1": ("The best rank-r approximation of a matrix W is its truncated SVD "
              "(Eckart–Young), and its error is the energy of the dropped singular values:",
              "矩阵 W 的最佳秩 r 近似就是截断 SVD（Eckart–Young 定理），其误差等于被舍弃奇异值的能"
              "量："),
    "m_ey2": ("and in the spectral norm", "谱范数下则为"),
    "m_ey3": ("For a Gaussian W₀ the singular values fill the interval [0, 2√d] "
              "(quarter-circle law); here σ_max = {smax}:",
              "对高斯随机矩阵 W₀，奇异值铺满区间 [0, 2√d]（四分之一圆律）；本次 σ_max = {smax}："),
    "m_ey4": ("The energy is spread over all d directions, so even r = {r} keeps only "
              "{kept} of ‖W₀‖²_F and leaves {rel} of ‖W₀‖_F. LoRA does not approximate W₀; it "
              "bets that the <i>update</i> a task needs is low-rank (<a href=\"#extensions\">"
              "§7</a>).",
              "能量分散在全部 d 个方向上，所以即使 r = {r} 也只保留 ‖W₀‖²_F 的 {kept}，剩下 ‖W₀‖_F "
              "的 "
              "{rel}。LoRA 并不近似 W₀；它赌的是任务所需的<i>增量</i>是低秩的（见"
              "<a href=\"#extensions\">第七节</a>）。"),
    "m_h4": ("Two more formulas used in §7", "第七节用到的另外两个公式"),
    "m_phi": ("Subspace similarity of two LoRA fits (the LoRA paper's φ; U is the matrix of "
              "top right-singular vectors of A; random subspaces give about max(i, j)/d):",
              "两次 LoRA 拟合的子空间相似度（LoRA 论文中的 φ；U 为 A 的前若干个右奇异向量；"
              "随机子空间约为 max(i, j)/d）："),
    "m_rs": ("rsLoRA scales by α/√r instead of α/r, so large ranks are not damped:",
             "rsLoRA 用 α/√r 代替 α/r，使大秩的更新不被过度压缩："),
    # ---- 5. running ----------------------------------------------------------------------
    "run_cmd": ("Commands (the seed's script, the same demo through the CLI, this page):",
                "命令（种子脚本、通过 CLI 运行的同一演示、生成本页）："),
    "run_table": ("This run's table (seed {seed}, d = {d}, α = {alpha}):",
                  "本次运行的结果表（随机种子 {seed}，d = {d}，α = {alpha}）："),
    "run_c_r": ("rank r", "秩 r"),
    "run_c_seed": ("‖ΔW‖_F (seed's “error”)", "‖ΔW‖_F（种子的“误差”）"),
    "run_c_th": ("theory α·d/√r ± std", "理论 α·d/√r ± 标准差"),
    "run_c_opt": ("best rank-r error ‖W₀ − W₀,r‖_F", "最佳秩 r 误差 ‖W₀ − W₀,r‖_F"),
    "run_c_par": ("trainable 2dr (share of d²)", "可训练参数 2dr（占 d² 比例）"),
    "run_fig": ("Left: what the seed plots, ‖ΔW‖_F, on top of α·d/√r. Right: what rank r can "
                "express, the best rank-r relative error of W₀ for every r, with the seed's "
                "ranks marked.",
                "左：种子画的曲线 ‖ΔW‖_F，与理论 α·d/√r 重合。右：秩 r 的真实表达能力，即每个 r 下 "
                "W₀ 的"
                "最佳秩 r 相对误差，圆点为种子的秩。"),
    "sl_h": ("Rank explorer", "秩探索器"),
    "sl_p": ("Move the slider (or click it and press ← →). Top row: the seed's random W₀. "
             "Bottom row: a structured update, {k} directions of decreasing strength plus noise "
             "(what LoRA expects a fine-tuning update to look like). Columns: "
             "the matrix, its best rank-r approximation, and what is left. Each panel shows the "
             "top-left {c}×{c} entries of the {d}×{d} matrix, in the same colours at every "
             "rank: a residual that fades to white means rank r captured the matrix.",
             "拖动滑块（或点击后按 ← →）。上排：种子的随机矩阵 W₀。下排：由 {k} 个强度递减的方向"
             "加噪声构成的结构化增量（LoRA 预期的微调增量就是这样）。"
             "三列依次是：矩阵本身、其最佳秩 r 近似、剩余部分。每幅小图显示 {d}×{d} 矩阵左上角 {c}×"
             "{c} "
             "个元素，所有秩使用同一色标：剩余部分褪成白色，说明秩 r 已经抓住了这个矩阵。"),
    "sl_label": ("rank r", "秩 r"),
    "sl_params": ("{p} trainable numbers ({pct} of {full})", "{p} 个可训练参数（占 {full} 的 {pct}"
                                                             "）"),
    "sl_params_more": (" — more than the matrix itself: LoRA saves parameters only while "
                       "r < d/2", "——比矩阵本身还多：只有 r < d/2 时 LoRA 才节省参数"),
    "sl_seed": ("seed's “error” ‖ΔW‖_F = {m} (theory α·d/√r = {t})",
                "种子的“误差” ‖ΔW‖_F = {m}（理论 α·d/√r = {t}）"),
    "sl_gauss": ("random W₀: best rank-r error {e} = {rel} of ‖W₀‖_F",
                 "随机 W₀：最佳秩 r 误差 {e}，占 ‖W₀‖_F 的 {rel}"),
    "sl_struct": ("structured ΔW: best rank-r error = {rel} of ‖ΔW‖_F",
                  "结构化 ΔW：最佳秩 r 误差占 ‖ΔW‖_F 的 {rel}"),
    "sl_alt": ("heatmaps at rank {r}", "秩 {r} 的热力图"),
}


def t(key: str, lang: str, /, **values: Any) -> str:
    """The text ``key`` in ``lang`` (``"en"`` or ``"zh"``), placeholders filled from
    ``values``. Keys missing here are looked up in :mod:`loralab.report_text_ext`."""
    pair = T.get(key)
    if pair is None:
        from .text_ext import TEXT_EXT

        pair = TEXT_EXT[key]
    text = pair[LANGS.index(lang)]
    text = text.format(**values) if values else text
    for plain, marked in _SUBSCRIPTS:
        text = text.replace(plain, marked)
    return text


# Subscripts written plainly in the texts above, shown as HTML sub/superscripts.
_SUBSCRIPTS: tuple[tuple[str, str], ...] = (
    ("‖²_F", "‖<sup>2</sup><sub>F</sub>"), ("‖_F", "‖<sub>F</sub>"),
    ("d_in", "d<sub>in</sub>"), ("d_out", "d<sub>out</sub>"), ("W₀,r", "W<sub>0,r</sub>"),
    ("σ_max", "σ<sub>max</sub>"),
)


def figure_labels(lang: str) -> dict[str, str]:
    """Labels of the rank explorer's figure (Chinese only when a CJK font is present)."""
    if lang == "zh":
        return {"gauss": "W₀（随机高斯矩阵）", "struct": "结构化增量 ΔW（秩 {k} + 噪声）",
                "approx": "{m} 的最佳秩 {r} 近似", "resid": "剩余部分：{m} 范数的 {pct:.1f}%",
                "suptitle": "秩 r = {r}：左上角 {c}×{c} 个元素（矩阵为 {d}×{d}）", "value": "数值"}
    return {"gauss": "W₀ (random Gaussian)", "struct": "structured ΔW (rank {k} + noise)",
            "approx": "best rank-{r} approximation of {m}",
            "resid": "left over: {pct:.1f}% of ‖{m}‖",
            "suptitle": "rank r = {r}: top-left {c}×{c} entries of the {d}×{d} matrices",
            "value": "value"}
