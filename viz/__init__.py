"""viz: pictures of computation graphs (forward and backward, clustered by module) and training plots.

    import viz
    logits, loss = model(idx, targets)
    viz.render(loss, "gpt.svg", depth=1, names=dict(model.named_parameters()))
    viz.draw_graph(loss, backward=True)          # a graphviz.Digraph (shows itself in Jupyter)
    viz.to_dot(loss)                             # DOT text, needs no Graphviz program
    viz.Source(viz.to_dot(loss)).render("gpt", format="png")   # graphviz.Source, rendered without dot too
    viz.plot_attention(weights, tokens, "attention.png")
    viz.plot_losses(train=[(0, 4.2), (100, 2.1)], path="losses.png")

Files: `viz.read` reads the engine's graph through its public API; `viz.graph` turns it into a
neutral description (module scopes, depth collapsing, the max_nodes guard); `viz.dot` emits that as
DOT (labels, colours, legend) with `viz.text` and `viz.colors`; `viz.program` finds the program that
renders DOT; `viz.rendering` writes files (`viz.render`); `viz.plots` draws matplotlib plots.
"""

from viz.draw import draw_graph, to_dot
from viz.plots import plot_attention, plot_losses
from viz.program import RenderError, Source
from viz.rendering import render

__all__ = ["RenderError", "Source", "draw_graph", "plot_attention", "plot_losses", "render", "to_dot"]
