"""The chapters' own code, above the library: one module per chapter (d2l's habit of keeping a
chapter's helpers with the chapter), each holding that chapter's recipes, figures, tables and
explorers. The notebooks import these; nothing in the library below imports them.

- :mod:`fplab.chapters.ch01_badnets`   transfer-learning tables, the trigger explorer
- :mod:`fplab.chapters.casestudies`    the face / speech / traffic case studies of chapters 2-4
- :mod:`fplab.chapters.ch02_pruning`   pruning curves, activation figures, the pruning explorer
  (chapters 2 and 3)
- :mod:`fplab.chapters.ch04_fine_pruning`  Table 1, the utility matrix, the defenses figure
- :mod:`fplab.chapters.ch05_anp`       the ANP paper's benchmark: recipes, defenses, table, figures
- :mod:`fplab.chapters.ch06_adaptive_attacks`  adversarial examples: recipes, cached attacks, tables
- :mod:`fplab.chapters.ch07_adaptive_backdoors`  adaptive backdoors, the utility matrix, the game
- :mod:`fplab.chapters.report`         expectations tables shared by every chapter
"""
