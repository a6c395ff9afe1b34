//! Alpaca's prompt templates (stanford_alpaca's `PROMPT_DICT`), the defaults of `finetune` and
//! `answer` and the template of `camel generate --alpaca`: `{instruction}` and `{input}` are
//! replaced by a record's fields.

pub const ALPACA_PROMPT_INPUT: &str = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:";
pub const ALPACA_PROMPT_NO_INPUT: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:";
