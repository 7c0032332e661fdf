# lme4's estimates at a given theta (skmlm's optimum) for cases where lme4's optimiser
# stops short of the optimum: proves that skmlm's higher logLik is real and gives the
# standard errors there.
# Usage: Rscript lme4_at_theta.R thetas.json OUTDIR   (thetas.json: {case: {theta: [...]}})
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
spec <- fromJSON(args[1]); outdir <- args[2]
for (name in names(spec)) {
  ref <- fromJSON(file.path(dirname(args[1]), paste0(name, ".json")))
  d <- read.csv(file.path(outdir, paste0(name, ".csv")))
  for (t in ref$random_terms$group) d[[t]] <- as.character(d[[t]])
  rt <- ref$random_terms
  bars <- sapply(seq_len(nrow(rt)), function(i) {
    lhs <- c(if (rt$intercept[i]) "1" else "0", unlist(rt$slopes[i]))
    sprintf("(%s | %s)", paste(lhs, collapse = " + "), rt$group[i])
  })
  fixed <- if (length(ref$fixed)) paste(ref$fixed, collapse = " + ") else "1"
  f <- as.formula(paste("y ~", fixed, "+", paste(bars, collapse = " + ")))
  m <- lmer(f, d, REML = ref$reml, control = lmerControl(optimizer = NULL),
            start = list(theta = spec[[name]]$theta))
  out <- list(name = name, theta = I(unname(getME(m, "theta"))), logLik = as.numeric(logLik(m)),
              fixef = as.list(fixef(m)), fixef_se = as.list(sqrt(diag(as.matrix(vcov(m))))),
              sigma = sigma(m))
  write(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(outdir, paste0(name, ".at_theta.json")))
  cat(name, as.numeric(logLik(m)), "\n")
}
