"""Chinese labels for the figures other loralab modules draw (demo, low-rank suite,
fine-tuning), applied by :func:`loralab.plots.report.localize_figure` on Chinese pages.

Each entry is ``(regex, replacement)``; a text is replaced when the regex matches it whole
(groups carry numbers across). A label that matches nothing stays English; the report's
tests list any such label by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["FIGURE_ZH", "localized_png"]


def localized_png(fig: Figure, font: str | None) -> bytes:
    """PNG of a figure from another module (90 dpi), its labels translated with
    :data:`FIGURE_ZH` when ``font`` (a CJK font) is set."""
    from ..plots import png_bytes
    from ..plots.report import localize_figure

    if font:
        localize_figure(fig, FIGURE_ZH, font)
    return png_bytes(fig, dpi=90)

# Chinese labels for figures drawn by other modules: (whole-string regex, replacement).
# Strings that match nothing stay English.
FIGURE_ZH: list[tuple[str, str]] = [
    # plots/demo.py
    (r"theory α·d/√r", "理论值 α·d/√r"),
    (r"seed's 'error' .*", "种子的“误差” ‖W₀−(W₀+ΔW)‖_F = ‖ΔW‖_F"),
    (r"rank r", "秩 r"),
    (r"Frobenius norm", "Frobenius 范数"),
    (r"relative error", "相对误差"),
    (r"The seed's curve: .*", "种子的曲线：随机增量的大小\nΔW = (α/r)·BA 按构造以 1/√r 缩小"),
    (r"best rank-r error .*", "最佳秩 r 相对误差 ‖W₀−W₀,ᵣ‖_F / ‖W₀‖_F（SVD）"),
    (r"the seed's ranks", "种子的秩"),
    (r"r = (\d+): ([\d.]+%) remains", r"r = \1：仍剩 \2"),
    (r"What rank r can express: .*",
     "秩 r 能表达多少：W₀ 的 Eckart–Young 最优误差\n高斯 W₀ 的谱是平的，小秩几乎抓不住什么"),
    (r"LoRA rank demo \(d = (\d+), α = ([^,]+), seed = (\d+)\)",
     r"LoRA 秩演示（d = \1，α = \2，随机种子 \3）"),
    # plots/lowrank.py: svd_figure
    (r"The seed's random update is not an approximation:\n.*",
     "种子的随机增量不是一种近似：\n其大小按构造以 1/√r 下降；SVD 给出真正的最优"),
    (r"theory ± 2 std", "理论 ± 2 倍标准差"),
    (r"theory \$\\alpha\\sqrt\{mn/r\}\$", "理论 α·√(mn/r)"),
    (r"seed's random \$.*", "种子的随机 ‖ΔW‖_F，ΔW = (α/r)·BA"),
    (r"best rank-\$r\$ \$.*\$ \(truncated SVD\)", "最佳秩 r 误差 ‖W−Wᵣ‖_F（截断 SVD）"),
    (r"quarter-circle theory", "四分之一圆律理论"),
    (r"\$\\\|W\\\|_F\$ \(rank 0\)", "‖W‖_F（秩 0）"),
    (r"rank r \(1 … min\(m, n\) = (\d+)\)", r"秩 r（1 … min(m, n) = \1）"),
    (r"What rank r can express \(Eckart–Young\):\n.*",
     "秩 r 能表达多少（Eckart–Young）：\n一次 SVD 得到整条曲线"),
    (r"\$.*\$ \(Frobenius\)", "‖W−Wᵣ‖_F / ‖W‖_F（Frobenius 范数）"),
    (r"\$.*\$ \(spectral\)", "‖W−Wᵣ‖₂ / ‖W‖₂ = σᵣ₊₁/σ₁（谱范数）"),
    (r"quarter-circle / Marchenko–Pastur theory", "四分之一圆 / Marchenko–Pastur 理论"),
    (r"your ranks", "所选的秩"),
    (r"(.+): shape \((\d+), (\d+)\), ‖W‖_F = (.+), α = (.+)",
     r"\1：形状 (\2, \3)，‖W‖_F = \4，α = \5"),
    (r"a Gaussian matrix of this shape and norm", "同形状、同范数的高斯矩阵"),
    (r"a Gaussian matrix of this shape \(reference\)", "同形状的高斯矩阵（参考）"),
    # spectrum_figure
    (r"index i", "序号 i"),
    (r"Singular values \(log scale\)", "奇异值（对数坐标）"),
    (r"Marchenko–Pastur quantiles", "Marchenko–Pastur 分位数"),
    (r"fraction of ‖W‖_F² in the top r singular values", "前 r 个奇异值占 ‖W‖_F² 的比例"),
    (r"Cumulative energy; dots: ranks for 50 / 90 / 99 %",
     "累计能量；圆点：达到 50 / 90 / 99% 能量的秩"),
    (r"(.+) \((\d+)×(\d+)\): r = (.+) for (.+) of the energy",
     r"\1（\2×\3）：达到 \5 的能量需 r = \4"),
    (r"Gaussian theory", "高斯理论"),
    (r"\$x = .*\$, s = RMS entry", "x = σ / (s·√max(m, n))，s 为元素的均方根"),
    (r"density", "密度"),
    (r"Gaussian W₀: Marchenko–Pastur law\n.*",
     "高斯 W₀：Marchenko–Pastur 定律\n（方阵时为四分之一圆 √(4−x²)/π）"),
    (r"(.+): σ/\(s√M\)", r"\1：σ/(s√M)"),
    (r"Marchenko–Pastur, c = (.+), edges (.+) … (.+)",
     r"Marchenko–Pastur，c = \1，边界 \2 … \3"),
    (r"Spectra: .*",
     "奇异值谱：高斯 W₀ 的谱是平的；谱快速衰减的增量把大部分能量集中在少数几个秩上"),
    # heatmaps_figure
    (r"column \(d_in\)", "列（d_in）"),
    (r"row \(d_out\)", "行（d_out）"),
    (r"W₀ \(base weight\)", "W₀（基座权重）"),
    (r"ΔW \(the update\)", "ΔW（增量）"),
    (r"residual ΔW − \[ΔW\]\$_\{(\d+)\}\$ \(r = \d+\)\n‖·‖_F = ([\d.]+%) of ‖ΔW‖_F",
     r"剩余 ΔW − [ΔW]_\1（r = \1）\n范数为 ‖ΔW‖_F 的 \2"),
    (r"W₀ and W entries \(one shared scale\)", "W₀ 与 W 的元素（同一色标）"),
    (r"ΔW and residual entries \(one shared scale\)", "ΔW 与剩余部分的元素（同一色标）"),
    (r"Where the update sits: \((\d+), (\d+)\), each cell the mean of a (\d+)×\d+ block; "
     r"(.*)", r"增量的位置：(\1, \2)，每格为 \3×\3 块的平均；\4"),
    (r"Where the update sits: \((\d+), (\d+)\); (.*)", r"增量的位置：(\1, \2)；\3"),
    # fit_figure
    (r"Adam step", "Adam 步数"),
    (r"Learned LoRA fit \(B = 0, A random at start\)\n.*",
     "学到的 LoRA 拟合（初始 B = 0、A 随机）\n虚线：各秩的 Eckart–Young 下界"),
    (r"r = (\d+): learned / optimal = ([\d.]+)", r"r = \1：学到 / 最优 = \2"),
    (r"final error / optimal error", "最终误差 / 最优误差"),
    (r"After (\d+) steps: how close to the optimum", r"\1 步之后：离最优有多近"),
    (r"learned / optimal", "学到 / 最优"),
    (r"Eckart–Young floor \(= 1\)", "Eckart–Young 下界（= 1）"),
    (r"1 % above the floor", "比下界高 1%"),
    (r"j \(top-j right singular vectors of A, r = (\d+)\)", r"j（A 的前 j 个右奇异向量，r = \1）"),
    (r"i \(of A, r = (\d+)\)", r"i（A 的前 i 个，r = \1）"),
    (r"Subspace similarity \$\\phi\(A_\{(\d+)\}, A_\{(\d+)\}, i, j\)\$ of the learned fits",
     r"学到的拟合的子空间相似度 φ(A_\1, A_\2, i, j)"),
    (r"Learned subspaces overlap; random ones do not \(d = (\d+)\)",
     r"学到的子空间相互重合，随机子空间则不然（d = \1）"),
    (r"learned: φ\(i, i\)", "学到：φ(i, i)"),
    (r"learned: φ\(i, j = (\d+)\)", r"学到：φ(i, j = \1)"),
    (r"A at initialisation \(random\): φ\(i, i\)", "初始化时的 A（随机）：φ(i, i)"),
    (r"random baseline max\(i, j\)/d", "随机基线 max(i, j)/d"),
    (r"φ +\(red: random baseline max\(i, j\)/d = (.+) … (.+)\)",
     r"φ   （红色：随机基线 max(i, j)/d = \1 … \2）"),
    (r"Learning ΔW = \(α/r\)·BA by Adam: target \((\d+), (\d+)\), α = (.+), lr = (.+)",
     r"用 Adam 学习 ΔW = (α/r)·BA：目标 (\1, \2)，α = \3，lr = \4"),
    # plots/methods.py
    (r"LoRA and its variants side by side: same ranks, targets, data and steps",
     "LoRA 及其变体并排比较：相同的秩、目标、数据和步数"),
    (r"Each method at the rank nearest 8 on (.+)\n\(start → end val loss in brackets\)",
     r"每种方法取 \1 上最接近 8 的秩\n（括号内为起始 → 结束验证损失）"),
    (r"val loss \(nats/(char|token), log scale\)", r"验证损失（nats/\1，对数坐标）"),
    (r"Step time / full fine-tuning's \((\w+), full step (.+)\)\non the bars: trainable "
     r"parameters", r"每步用时 / 全参微调（\1，全参每步 \2）\n柱上数字：可训练参数"),
    (r"step time / full fine-tuning's", "每步用时 / 全参微调"),
    (r"(\w+): r = ([-+][\d.]+) \(paper: negative\)(.*)", r"\1：r = \2（论文：负）\3"),
    (r"(\w+): r = ([-+][\d.]+) \(paper: positive\)(.*)", r"\1：r = \2（论文：正）\3"),
    (r"DoRA's magnitude/direction view: (\w+) of every layer over training \(adapters(.*) on "
     r"(.+); later steps darker\)", r"DoRA 的幅度/方向视角：训练中每层的 \1（适配器\2，作用于 \3；"
     r"越深越晚）"),
    (r"layer (\d+)", r"第 \1 层"),
    (r"layer", "层"),                            # the colour bar of a deep model's layers
    (r"no α/√r comparison in this run\n\(add rslora to --methods\)",
     "本次运行没有 α/√r（rsLoRA）对比"),
    # plots/finetune.py
    (r"fine-tuning step", "微调步数"),
    (r"val loss on Pig Latin \(nats/char, log scale\)",
     "Pig Latin 上的验证损失（nats/字符，对数坐标）"),
    (r"LoRA on (.+)", r"LoRA 作用于 \1"),
    (r"base, not fine-tuned \((.+)\)", r"基座，未微调（\1）"),
    (r"full FT, (.+) params \((.+)\)", r"全参微调，\1 个参数（\2）"),
    (r"LoRA r=(\d+) rsLoRA α/√r, (.+) \((.+)\)", r"LoRA r=\1 rsLoRA α/√r，\2 个参数（\3）"),
    (r"LoRA r=(\d+), (.+) \((.+)\)", r"LoRA r=\1，\2 个参数（\3）"),
    (r"Fine-tuning an English-pretrained tiny LM on Pig Latin: full vs LoRA \((\w+) preset, "
     r"final val loss in brackets\)",
     r"在 Pig Latin 上微调英文预训练的小型语言模型：全参微调与 LoRA"
     r"（\1 预设，括号内为最终验证损失）"),
    (r"90% of the energy: rank (\d+)–(\d+) of (\d+)", r"90% 的能量：秩 \1–\2（共 \3）"),
    (r"energy kept \$.*\$", "保留的能量 Σᵢ≤ᵣ σᵢ² / Σ σᵢ²"),
    (r"Spectrum of the full update .*",
     "全参微调增量 ΔW_full = W_FT − W₀ 的谱\n每层一条曲线；圆点：达到 90% 能量的秩"),
    (r"val loss \(log scale\)", "验证损失（对数坐标）"),
    (r"Truncated full update vs LoRA at the same rank\n\(base, not fine-tuned: (.+)\)",
     r"截断的全参增量与同秩 LoRA 对比\n（基座，未微调：\1）"),
    (r"\$W_0 \+ \[\\Delta W_\{full\}\]_r\$ on (.+)", r"W₀ + [ΔW_full]ᵣ，作用于 \1"),
    (r"LoRA trained at rank r on (.+)", r"在秩 r 上训练的 LoRA，作用于 \1"),
    (r"full fine-tuning \((.+)\)", r"全参微调（\1）"),
    (r"Scale α/r \(LoRA\) vs α/√r \(rsLoRA\), α = (.+)\non (.*), at the larger ranks",
     r"缩放 α/r（LoRA）与 α/√r（rsLoRA）对比，α = \1\n作用于 \2，较大的秩"),
    (r"Why LoRA works: .*", "LoRA 为什么有效：全参微调产生的增量近似低秩"),
    (r"trainable parameters \(log scale\)", "可训练参数（对数坐标）"),
    (r"final val loss \(log scale\)", "最终验证损失（对数坐标）"),
    (r"Quality per trainable parameter \(base: (.+)\)", r"每个可训练参数换来的效果（基座：\1）"),
    (r"full fine-tuning", "全参微调"),
    (r"relative to full fine-tuning \(log scale\)", "相对全参微调（对数坐标）"),
    (r"Cost relative to full fine-tuning \((\w+); full step (.+)\)",
     r"相对全参微调的开销（\1；全参每步 \2）"),
    (r"full fine-tuning = 1", "全参微调 = 1"),
    (r"target step time 0\.8", "目标：每步用时 0.8"),
    (r"target optimizer 1/20", "目标：优化器状态 1/20"),
    (r"step time / full", "每步用时 / 全参"),
    (r"optimizer state / full", "优化器状态 / 全参"),
    (r"What LoRA saves: .*", "LoRA 省下了什么：参数与优化器状态；每步用时只在模型较宽时才省"),
    (r"\$W_0 \+ \\Delta W_\{full\}\$ on (.+), untruncated \((.+)\)",
     r"W₀ + ΔW_full，作用于 \1，未截断（\2）"),
    (r"The bridge to the SVD: 90 % of the full update's energy lies in rank (.+) of (\d+); "
     r"rank (\d+) keeps (.+) % of it",
     r"与 SVD 的联系：全参增量 90% 的能量落在秩 \1（共 \2）；秩 \3 保留其中的 \4%"),
    (r"full fine-tuning, all weights \((.+)\)", r"全参微调，所有权重（\1）"),
    # plots/merge_methods.py
    (r"add_weighted_adapter\((.+)\): what each combination makes of ΔW",
     r"add_weighted_adapter(\1)：每种组合把 ΔW 变成什么"),
    (r"distance from the exact sum \(density (.+)\)", r"离精确和的距离（density \1）"),
    (r"(‖.*‖_F) +\(all layers\)", r"\1（全部层）"),
    (r"exact", "精确"),
    (r"cross terms / rank cut", "交叉项 / 截秩"),
    (r"pruned", "剪枝"),
    (r"exact Σ wᵢΔWᵢ", "精确和 Σ wᵢΔWᵢ"),
    (r"ΔW entries of (.+)", r"\1 的 ΔW 元素"),
    (r"(.+), (\d+%) zeros", r"\1，\2 为零"),
    # plots/studies.py
    (r"full fine-tuning: best (\S+)", r"全参微调：最优 \1"),
    (r"LoRA r=(\d+): best (\S+), (.+)× full's", r"LoRA r=\1：最优 \2，为全参的 \3 倍"),
    (r"learning rate \(log scale\)", "学习率（对数坐标）"),
    (r"final val loss", "最终验证损失"),
    (r"Final val loss against learning rate \(★ best; hollow ★: at the grid's edge\)",
     "最终验证损失对学习率（★ 最优；空心 ★：在网格边缘）"),
    (r"attention only", "仅注意力"),
    (r"MLP only", "仅 MLP"),
    (r"all linear layers", "全部线性层"),
    (r"budget: all layers at r=(\d+)", r"预算：全部层 r=\1"),
    (r"LoRA placement at matched trainable parameters\n\(on the bars: rank, trainable "
     r"parameters\)", "相同可训练参数量下的 LoRA 放置\n（柱上：秩、可训练参数）"),
]
