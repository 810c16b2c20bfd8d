"""The report's FAQ and extension chapters in English and Chinese (``key: (en, zh)``).

The Chinese labels of figures drawn by other modules are in :mod:`loralab.report_figure_zh`.
"""

from __future__ import annotations

__all__ = ["TEXT_EXT"]

TEXT_EXT: dict[str, tuple[str, str]] = {
    # ---- 6. FAQ ------------------------------------------------------------------------
    "faq_q1": ("The error curve is not monotone?", "误差曲线不单调？"),
    "faq_a1": ("The seed's curve is ‖ΔW‖_F of one random draw. It scatters around α·d/√r by "
               "about ±{sd} (the “± std” column of §5), so with doubling ranks it almost "
               "always falls; with close ranks (say 8 and 9) it can rise. The SVD optimum "
               "(right panel in §5) is monotone by construction.",
               "种子的曲线是一次随机采样的 ‖ΔW‖_F，它在 α·d/√r 附近约有 ±{sd} 的波动（第五节表中"
               "“± 标准差”一列），所以秩成倍增加时几乎总是下降；相邻的秩（如 8 与 9）则可能上升。"
               "SVD 最优误差（第五节右图）按构造单调下降。"),
    "faq_q2": ("Why does the “error” fall with r at all, if BA is random?",
               "既然 BA 是随机的，“误差”为什么还会随 r 下降？"),
    "faq_a2": ("Because it is not an error: ‖W₀ − (W₀ + ΔW)‖_F = ‖ΔW‖_F, and the α/r scale "
               "makes ‖ΔW‖_F ≈ α·d/√r (<a href=\"#math-error\">§4</a>). Rescale by α/√r "
               "(rsLoRA) and the same curve is flat.",
               "因为它并不是误差：‖W₀ − (W₀ + ΔW)‖_F = ‖ΔW‖_F，而 α/r 缩放使 ‖ΔW‖_F ≈ α·d/√r"
               "（见<a href=\"#math-error\">第四节</a>）。若改用 α/√r（rsLoRA），同一条曲线就是平的"
               "。"),
    "faq_q3": ("Section 4 of the seed says A is d×r, but the code says r×d?",
               "种子文档第四节说 A 是 d×r，代码里却是 r×d？"),
    "faq_a3": ("Section 4 exchanges the names: its “A B” is the code's B A. Follow the code: "
               "A: (r, d_in) meets the input first, B: (d_out, r) starts at zero, "
               "ΔW = (α/r)·BA. PEFT's <code>lora_A</code> and <code>lora_B</code> use the "
               "same names.",
               "第四节把名字对调了：它的“A B”就是代码中的 B A。以代码为准：A: (r, d_in) 先与输入相"
               "乘，"
               "B: (d_out, r) 初始为零，ΔW = (α/r)·BA。PEFT 的 <code>lora_A</code> 与 "
               "<code>lora_B</code> 也是这样命名。"),
    "faq_q4": ("No figure appears?", "图像未生成？"),
    "faq_a4": ("loralab draws with matplotlib's Agg canvas and never imports pyplot, so it "
               "needs no display. Figures are saved as PNG files (or embedded in this page). "
               "Check that matplotlib is installed and that the output folder is writable.",
               "loralab 使用 matplotlib 的 Agg 画布绘图，从不导入 pyplot，因此不需要显示器。"
               "图像保存为 PNG 文件（或嵌入本页）。请确认已安装 matplotlib，且输出目录可写。"),
    "faq_q5": ("Memory or time pressure?", "显存/内存压力？"),
    "faq_a5": ("One d×d matrix in float32 takes 4·d² bytes ({mib} MiB at d = {d}); the SVD "
               "costs about d³ operations. Lower <code>--hidden-size</code> (e.g. 256) or the "
               "largest rank.",
               "一个 float32 的 d×d 矩阵占 4·d² 字节（d = {d} 时为 {mib} MiB）；SVD 约需 d³ 次运算"
               "。"
               "可调小 <code>--hidden-size</code>（如 256）或降低最大的秩。"),
    "faq_q6": ("How does this connect to a real Transformer?", "如何与真实 Transformer 结合？"),
    "faq_a6": ("Wrap the attention projections q/k/v/o (and optionally the MLP) with "
               "<code>LoRALinear</code>, freeze everything else, train A and B, and for "
               "inference merge W = W₀ + (α/r)·BA so there is no extra cost. "
               "<code>loralab.lora</code> does this; <a href=\"#ext-finetune\">§7</a> runs it "
               "on a tiny language model.",
               "用 <code>LoRALinear</code> 包装注意力的 q/k/v/o 投影（可选 MLP），冻结其余参数，只"
               "训练 A 和 B；"
               "推理时合并 W = W₀ + (α/r)·BA，不增加计算开销。<code>loralab.lora</code> 实现了这些"
               "，"
               "<a href=\"#ext-finetune\">第七节</a>在一个小型语言模型上实际运行。"),
    "faq_q7": ("The figures' labels are English in the Chinese page?", "中文页面里图中文字是英文？"
                                                                       ""),
    "faq_a7": ("No Chinese font was found when the page was built. Install one "
               "(<code>apt-get install fonts-wqy-microhei</code>) and rebuild with "
               "<code>--lang zh</code>.",
               "生成页面时没有找到中文字体。安装一个字体（<code>apt-get install fonts-wqy-microhei"
               "</code>）后用 <code>--lang zh</code> 重新生成即可。"),
    # ---- 7. extensions -----------------------------------------------------------------
    "ext_intro": ("The seed's section 8 lists four extensions; here they are, run.",
                  "种子文档第八节列出了四个扩展，下面逐一实际运行。"),
    "ext_svd_h": ("7.1 SVD optimum against the random BA", "7.1 SVD 最优近似与随机 BA 对比"),
    "ext_spec_h": ("7.2 Spectrum: why a small rank can (or cannot) be enough",
                   "7.2 谱分析：为什么小秩可能够用（或不够用）"),
    "ext_heat_h": ("7.3 Heatmaps", "7.3 热力图"),
    "ext_fit_h": ("7.4 Learning B and A by gradient descent", "7.4 用梯度下降学习 B 和 A"),
    "ext_ft_h": ("7.5 Real fine-tuning: full against LoRA on a tiny causal LM",
                 "7.5 真实微调：小型因果语言模型上的全参微调与 LoRA 对比"),
    "ext_missing_mod": ("the module {mod} is not available in this installation",
                        "当前安装中没有模块 {mod}"),
    "ext_skipped": ("skipped for this build ({why})", "本次生成时跳过（{why}）"),
    "ext_heat_slider": ("The interactive version is the <a href=\"#rank-explorer\">rank "
                        "explorer</a> in §5.",
                        "交互版本见第五节的<a href=\"#rank-explorer\">秩探索器</a>。"),
    # ---- 7.1-7.4 low-rank analyses -----------------------------------------------------
    "x_w0": ("seed's W₀ (Gaussian)", "种子的 W₀（高斯）"),
    "x_upd": ("structured ΔW (rank {k} + noise)", "结构化 ΔW（秩 {k} + 噪声）"),
    "x_svd_p": ("The seed's random update and the best rank-r approximation side by side, for "
                "the seed's W₀ ({d}×{d}) and for the structured update of the rank explorer. "
                "The seed's ‖ΔW‖_F follows α·d/√r whatever the matrix; the best rank-r error "
                "depends on the matrix: it barely moves for W₀ and collapses for the update "
                "once r reaches its rank.",
                "种子的随机增量与最佳秩 r 近似并排比较，矩阵为种子的 W₀（{d}×{d}）和秩探索器中的结"
                "构化增量。"
                "无论矩阵是什么，种子的 ‖ΔW‖_F 都沿着 α·d/√r 变化；最佳秩 r 误差则取决于矩阵：对 W₀"
                " 几乎不动，"
                "对结构化增量在 r 达到其秩后骤降。"),
    "x_svd_check": ("Eckart–Young check: W − W<sub>r</sub> was formed explicitly at each of the {n}"
                    " "
                    "ranks and measured; the largest discrepancy |‖W − W<sub>r</sub>‖²_F − Σ<sub>i&"
                    "gt;r</sub> σ<sub>i</sub><sup>2</sup>| "
                    "/ ‖W‖²_F is {fro}",
                    "Eckart–Young 验证：在 {n} 个秩上显式构造 W − W<sub>r</sub> 并测量，"
                    "|‖W − W<sub>r</sub>‖²_F − Σ<sub>i&gt;r</sub> σ<sub>i</sub><sup>2</sup>| / ‖W‖²"
                    "_F 的最大偏差为 {fro}"),
    "x_svd_spec": ("; in the spectral norm |‖W − W<sub>r</sub>‖₂ − σ<sub>r+1</sub>| / σ₁ ≤ {spec}.",
                   "；谱范数下 |‖W − W<sub>r</sub>‖₂ − σ<sub>r+1</sub>| / σ₁ ≤ {spec}。"),
    "x_svd_cap_g": ("The seed's W₀ ({d}×{d}): the random update's size against the real "
                    "optimum (left) and the relative error of every rank with the "
                    "quarter-circle theory (right).",
                    "种子的 W₀（{d}×{d}）：随机增量的大小与真正的最优误差（左），以及每个秩的相对误"
                    "差与"
                    "四分之一圆律理论（右）。"),
    "x_svd_cap_u": ("The structured update (rank {k} + noise): the same seed curve, but the "
                    "optimum drops to the noise level at r = {k}.",
                    "结构化增量（秩 {k} + 噪声）：种子曲线不变，但最优误差在 r = {k} 处降到噪声水平"
                    "。"),
    "x_matrix": ("matrix", "矩阵"),
    "x_energy": ("rank for {f} of the energy", "达到 {f} 能量所需的秩"),
    "x_spec_p": ("Energy is ‖W‖²_F = Σ σ²ᵢ. The Gaussian W₀ needs r = {g90} of its {d} "
                 "directions for 90 % of it; the structured update needs r = {u90}. That is "
                 "why a small rank can be enough for an update and never for a random weight.",
                 "能量即 ‖W‖²_F = Σ σ²ᵢ。高斯 W₀ 需要 {d} 个方向中的 r = {g90} 个才有 90% 的能量；"
                 "结构化增量只需 r = {u90}。这就是为什么小秩对增量可能够用，对随机权重却永远不够。"
                 ""),
    "x_spec_cap": ("Singular values (left), cumulative energy with the 50/90/99 % ranks "
                   "(middle), and the Gaussian W₀'s singular values against the "
                   "Marchenko–Pastur law (right).",
                   "奇异值（左）、累计能量及达到 50/90/99% 的秩（中），以及高斯 W₀ 的奇异值分布与 "
                   "Marchenko–Pastur 定律（右）。"),
    "x_heat_p": ("A small update ΔW (rank 8 + noise, 20 % of ‖W₀‖_F) on the seed's W₀: W₀ and "
                 "W = W₀ + ΔW look alike, ΔW has visible structure, and the residual "
                 "ΔW − [ΔW]<sub>r</sub> of a rank-r LoRA fades as r grows.",
                 "在种子的 W₀ 上加一个小增量 ΔW（秩 8 + 噪声，范数为 ‖W₀‖_F 的 20%）：W₀ 与 W = W₀ "
                 "+ ΔW "
                 "看起来几乎一样，ΔW 有明显的结构，秩 r 的 LoRA 留下的剩余 ΔW − [ΔW]<sub>r</sub> 随"
                 " r 增大而"
                 "褪去。"),
    "x_heat_cap": ("W₀, W, ΔW and the residual of ΔW at r = {ranks} (two shared colour "
                   "scales; large matrices are block-averaged).",
                   "W₀、W、ΔW 以及 r = {ranks} 时 ΔW 的剩余部分（两个共享色标；大矩阵按块平均）。"),
    "x_fit_learned": ("learned ‖W − (α/r)BA‖_F", "学到的 ‖W − (α/r)BA‖_F"),
    "x_fit_opt": ("optimum ‖W − W<sub>r</sub>‖_F", "最优 ‖W − W<sub>r</sub>‖_F"),
    "x_fit_ratio": ("learned / optimum", "学到 / 最优"),
    "x_fit_p": ("What LoRA's training does, on a {n}×{n} structured target: B = 0 and A "
                "random at start, Adam for {steps} steps. The Eckart–Young floor is the best "
                "any rank-r update can reach; here learned / optimum ≤ <b>{worst}</b>.",
                "LoRA 训练做的事情，在 {n}×{n} 的结构化目标上演示：B 初始为 0、A 随机，"
                "用 Adam 训练 {steps} 步。Eckart–Young 下界是任何秩 r 增量所能达到的最好结果；"
                "本次学到 / 最优 ≤ <b>{worst}</b>。"),
    "x_fit_cap": ("Error against Adam steps with each rank's floor (dashed), the final "
                  "learned/optimal ratio, and the subspace similarity φ of the two largest "
                  "fits against the random baseline.",
                  "误差随 Adam 步数的变化及各秩的下界（虚线）、最终的学到/最优比值，以及两个最大秩"
                  "拟合的"
                  "子空间相似度 φ 与随机基线的对比。"),
    # ---- 7.5 fine-tuning ---------------------------------------------------------------
    "ft_p": ("A tiny GPT-style causal LM ({params} parameters), pretrained on plain English, "
             "is fine-tuned on Pig Latin, a rule it has never seen: before fine-tuning its "
             "validation loss there is {base} nats per character. Full fine-tuning trains "
             "every weight and reaches {full}; LoRA trains only A and B on the attention "
             "projections (attn) or on attention and MLP (attn+mlp), at each rank, from the "
             "same base, with the same batches in the same order.",
             "一个小型 GPT 式因果语言模型（{params} 个参数）先在普通英文上预训练，再在它从未见过的"
             "规则“Pig Latin”上微调：微调前它在该任务上的验证损失为每字符 {base} nats。全参微调训练"
             "所有"
             "权重，达到 {full}；LoRA 只在注意力投影（attn）或注意力加 MLP（attn+mlp）上训练 A 和 B"
             "，"
             "每个秩都从同一个基座出发，按相同顺序使用相同的批次。"),
    "ft_run": ("run", "运行"),
    "ft_params": ("trainable parameters", "可训练参数"),
    "ft_loss": ("final val loss", "最终验证损失"),
    "ft_step": ("step time (ms)", "每步用时（毫秒）"),
    "ft_opt": ("optimizer state", "优化器状态"),
    "ft_targets": ("<b>{lora} against full fine-tuning:</b> val loss {gap} % (target ≤ 5 %) "
                   "{g_ok}; step time {step}× (target ≤ 0.8×) {s_ok}; optimizer state "
                   "{opt}× smaller (target ≥ 20×) {o_ok}; the base's loss is {base}× full "
                   "fine-tuning's (clearly worse) {b_ok}.",
                   "<b>{lora} 与全参微调对比：</b>验证损失相差 {gap}%（目标 ≤ 5%）{g_ok}；"
                   "每步用时为 {step} 倍（目标 ≤ 0.8 倍）{s_ok}；优化器状态小 {opt} 倍"
                   "（目标 ≥ 20 倍）{o_ok}；基座的损失是全参微调的 {base} 倍（明显更差）{b_ok}。"),
    "ft_headline": ("Fine-tuning a tiny LM on Pig Latin: {lora} reaches val loss <b>{l}</b> "
                    "against {f} for full fine-tuning (base model: {b}), training {pct} of "
                    "the parameters.",
                    "在 Pig Latin 上微调小型语言模型：{lora} 的验证损失为 <b>{l}</b>，全参微调为 {f"
                    "}"
                    "（基座模型：{b}），而只训练了 {pct} 的参数。"),
    "ft_merge": ("Merge check: for the {n} LoRA runs the merged weight W₀ + (α/r)·BA was "
                 "compared with the unmerged model; largest logit difference {diff}, "
                 "{ok} of {n} within the experiment's tolerance (1e-5 in fp32).",
                 "合并检查：对 {n} 个 LoRA 运行，比较合并后的权重 W₀ + (α/r)·BA 与未合并的模型；"
                 "logits 的最大差异为 {diff}，{n} 个中有 {ok} 个在实验的容差（fp32 下 1e-5）之内。"
                 ""),
    "ft_merge64": (" In float64 the merged weight and the unmerged model agree to {d64}: the "
                   "identity W₀x + (α/r)·B(Ax) = (W₀ + (α/r)·BA)x is exact, and what float32 "
                   "shows is its rounding (the unmerged model alone moves by up to {noise} "
                   "between float32 and float64).",
                   "在 float64 下合并后的权重与未合并的模型相差不超过 {d64}：恒等式 "
                   "W₀x + (α/r)·B(Ax) = (W₀ + (α/r)·BA)x 是精确的，float32 下看到的差异来自舍入"
                   "（未合并的模型本身在 float32 与 float64 之间就相差最多 {noise}）。"),
    "ft_unreadable": ("the experiment ran, but its results could not be read ({why})",
                      "实验已运行，但无法读取其结果（{why}）"),
    "ft_base": ("base (not fine-tuned)", "基座（未微调）"),
    "ft_full": ("full fine-tuning", "全参微调"),
    "ft_samples": ("Greedy continuations of Pig Latin prompts; below each, the text read "
                   "back into English (words that are not valid Pig Latin are marked ?):",
                   "对 Pig Latin 提示的贪心续写；每格下方是还原成英文的结果（不是合法 Pig Latin 的"
                   "词"
                   "标为 ?）："),
    "ft_prompt": ("prompt", "提示"),
    "ft_cap_conv": ("Validation loss against fine-tuning step: full fine-tuning, LoRA at "
                    "each rank (light to dark: small to large r), rsLoRA dashed, the base "
                    "dotted.",
                    "验证损失随微调步数的变化：全参微调、各个秩的 LoRA（由浅到深：r 由小到大）、rsL"
                    "oRA"
                    "（虚线）以及基座（点线）。"),
    "ft_cap_bridge": ("Why LoRA works: the full update ΔW_full is nearly low-rank (its "
                      "spectrum), W₀ + ΔW_full truncated to rank r against LoRA trained at "
                      "rank r, and α/r against α/√r.",
                      "LoRA 为什么有效：全参微调的增量 ΔW_full 近似低秩（其谱）；把 ΔW_full 截断到"
                      "秩 r "
                      "后的 W₀ + [ΔW_full]_r 与在秩 r 上训练的 LoRA 对比；以及 α/r 与 α/√r 的对比。"
                      ""),
    "ft_cap_cost": ("What LoRA saves: quality per trainable parameter, and step time and "
                    "optimizer state relative to full fine-tuning.",
                    "LoRA 省下了什么：每个可训练参数换来的效果，以及相对全参微调的每步用时和优化器"
                    "状态。"),
    "sl_ft": ("fine-tuning at r = {r} ({targets}): LoRA val loss {lora}; W₀ + ΔW_full "
              "truncated to rank {r}: {trunc} (full: {full}, base: {base})",
              "微调，r = {r}（{targets}）：LoRA 验证损失 {lora}；截断到秩 {r} 的 W₀ + ΔW_full："
              "{trunc}（全参：{full}，基座：{base}）"),
}
