-- delete_model: forget a model.  ARGV: 3 model id.  Returns its record, or nil when absent.
return forget_model(ARGV[3])
