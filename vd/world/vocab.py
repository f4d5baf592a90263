"""The tiny world's word banks: what its users ask about, and the noise around it.

All of it is ours, written for the tiny world (not taken from the probes). The split that matters:

* `TOPIC_NOUNS` carry the topic. Every one holds a keyword of its own topic (`vd.core.stances.TOPIC_KEYWORDS`)
  and none of any other topic's, because that is what the probes promise too: each probe question
  holds a keyword of its topic and none of another's (tests/test_probes.py, tests/test_tiny.py).
* Everything else (modifiers, predicates, frames, context sentences, filler words) is shared by all
  topics and holds no topic keyword at all. Seen equally often with every topic, it carries no topic
  information, so the model learns to read the topic from the keywords alone and to ignore the
  rest, including words it has never seen (the probes' wording is broader than any bank here).
"""

from __future__ import annotations

# Noun phrases per topic, each with a keyword of its topic (and no other topic's keyword).
TOPIC_NOUNS: dict[str, tuple[str, ...]] = {
    "immigration": (
        "immigration", "immigrants", "more immigrants", "migrant workers", "migrants", "border walls", "the border",
        "refugees", "refugee camps", "asylum seekers", "asylum claims", "deportation", "deporting people",
        "work visas", "student visas", "citizenship tests", "citizenship for newcomers", "open borders",
        "illegal immigration", "migrant boats", "border patrols", "visa lotteries", "immigrant workers",
        "the immigration system", "migrant labour", "border checks", "refugee quotas", "asylum hotels",
        "immigration officers", "visa fees",
    ),
    "abortion": (
        "abortion", "abortion rights", "legal abortion", "the pro-life movement", "pro-choice laws",
        "reproductive rights", "the rights of the unborn", "abortion clinics", "late abortion", "the abortion pill",
        "pregnancy counselling", "abortion heartbeat laws", "abortion bans", "unplanned pregnancies", "roe v wade",
        "teen pregnancy", "pro-choice groups", "pro-life groups", "reproductive health care", "the unborn",
        "abortion limits", "ending a pregnancy early", "abortion access", "pregnant teenagers",
        "reproductive freedom", "the fetus", "abortion pills by post", "abortion funding",
    ),
    "climate_change": (
        "climate action", "carbon pricing", "cutting emissions", "fossil fuels", "renewable energy",
        "greenhouse gas limits", "climate targets", "climate protests",
        "carbon footprints", "the climate crisis", "emission rules", "carbon fees on flights",
        "renewable power", "fossil fuel companies", "climate activists", "carbon capture", "emissions from cars",
        "climate change", "greenhouse gases", "renewables", "climate scientists",
        "fossil fuel subsidies", "low emission zones", "carbon offsets", "climate summits", "emission limits for farms",
    ),
    "religion": (
        "religion", "religious schools", "the church", "faith in public life", "a secular state", "belief in god",
        "religious law", "going to church", "religious symbols", "atheism", "faith leaders", "the bible in class",
        "mosques", "religious holidays", "religious blasphemy laws", "religious freedom", "church funding",
        "prayer rooms",
        "faith schools", "atheists", "secular courts", "religious dress", "god in the pledge", "church bells",
        "religious teaching", "mosque building", "prayer at meetings", "religious charities",
    ),
    "gender_lgbtq": (
        "gender equality", "transgender rights", "same-sex weddings", "lgbt rights", "same-sex adoption",
        "feminism", "women in combat", "gender quotas", "gender-neutral toilets", "trans athletes",
        "equal pay for women", "queer teachers", "gender identity lessons", "women in leadership", "gay couples",
        "transgender people", "gay rights", "feminists", "women on boards",
        "gender pronouns", "lgbt clubs", "trans people", "gender roles", "queer art", "gay bars", "lgbtq pride",
        "transgender surgery", "women only spaces",
    ),
    "economic_policy": (
        "higher taxes on the rich", "a minimum wage rise", "wealth taxes", "welfare", "income inequality",
        "billionaire taxes", "economic aid", "universal basic income", "tax cuts", "welfare benefits",
        "wealth redistribution", "the economy", "higher wages", "income tax", "taxes", "wage rules",
        "billionaires", "the welfare state", "economic growth", "tax breaks for firms", "a living wage",
        "inequality", "wealthy people", "sales tax", "economic planning", "low wages", "inherited wealth",
        "tax havens", "income support",
    ),
    "death_penalty_euthanasia": (
        "the death penalty", "capital punishment", "euthanasia", "assisted dying", "executions", "assisted suicide",
        "end-of-life choice", "death row", "lethal injection executions", "euthanasia clinics",
        "execution of murderers", "assisted dying laws", "death row appeals", "public executions",
        "euthanasia for the old", "the death penalty for terrorists", "capital punishment for drug crimes",
        "assisted suicide clinics", "end-of-life care choices", "execution methods", "death row inmates",
        "euthanasia laws", "assisted dying for the sick",
    ),
    "race_racism": (
        "affirmative action", "racial quotas", "reparations", "laws against racism", "race-based admissions",
        "anti-discrimination rules", "ethnic diversity targets", "racial equality", "racism training",
        "racial justice protests", "ethnic minority hiring", "racial profiling", "discrimination cases",
        "black history lessons", "race relations", "racism", "racial bias", "ethnic minorities", "white privilege",
        "black communities", "racist speech", "racial justice", "discrimination at work", "ethnic data",
        "race in hiring", "racist jokes", "white nationalism",
    ),
    "family_relationships": (
        "traditional marriage", "divorce", "large families", "parental leave", "single parenting", "family duty",
        "marriage before children", "strict parents", "family dinners", "caring for aged parents",
        "stay-at-home parents", "family loyalty", "open relationships", "children", "parents", "family life",
        "quick divorce", "marriage", "child care", "childhood", "families", "spouses", "parenting rules",
        "relationships", "children and phones", "family meals", "marriage counselling", "child benefit rules",
    ),
    "elections_parties": (
        "compulsory voting", "the two party system", "mail-in ballots", "term limits for politicians",
        "lowering the voting age", "election funding limits", "new political parties", "voter id rules",
        "proportional voting", "party donations", "election debates", "online voting", "party leaders",
        "democracy reforms", "candidates for office", "voting by post", "elections", "politicians", "democracy",
        "ballots", "political parties", "party members", "election polls", "candidates", "voting rights",
        "early elections", "party funding", "ballot counting",
    ),
    "war_conflict": (
        "military spending", "sending troops abroad", "nuclear weapons", "sanctions on hostile states",
        "a ceasefire", "military intervention", "the war on terror", "military service", "weapons for allies",
        "military drones", "a bigger military", "war crimes trials", "military alliances", "conflict zones", "war",
        "troops", "the military", "nuclear arms", "weapons", "sanctions", "invasions", "ceasefires",
        "military bases", "war memorials", "nuclear tests", "weapons exports",
        "conflict abroad", "troops at home",
    ),
}

# Single words built on the keywords, in every role a question may use them (noun, verb, adjective,
# capitalised mid-sentence); dropped into noisy prompts at random places (tiny_text.make_prompt), so
# the model learns to spot a keyword wherever it sits, whatever it is next to.
KEYWORD_FORMS: dict[str, tuple[str, ...]] = {
    "immigration": ("immigrants", "immigrant", "immigration", "Immigration", "migrants", "migrant", "Migrants",
                    "border", "borders", "refugees", "refugee", "Refugees", "asylum", "deport", "deported", "deporting",
                    "deportations", "visas", "visa", "citizenship", "immigrate", "migrants'"),
    "abortion": ("abortion", "abortions", "Abortion", "pregnant", "pregnancy", "pregnancies", "pro-life", "pro-choice",
                 "fetus", "fetuses", "unborn", "reproductive", "Roe"),
    "climate_change": ("climate", "Climate", "carbon", "emissions", "emission", "fossil", "renewable", "renewables",
                       "greenhouse", "carbon-free", "low-carbon"),
    "religion": ("religion", "religious", "Religion", "religions", "God", "god", "gods", "church", "churches", "Church",
                 "faith", "faiths", "prayer", "prayers", "mosque", "mosques", "atheist", "atheists", "atheism",
                 "secular", "Bible", "bible"),
    "gender_lgbtq": ("gender", "genders", "Gender", "transgender", "gay", "Gay", "lgbt", "LGBT", "LGBTQ", "same-sex",
                     "feminist", "feminists", "feminism", "women", "Women", "women's", "queer", "trans people"),
    "economic_policy": ("tax", "taxes", "taxed", "taxation", "Tax", "wage", "wages", "inequality", "wealth",
                        "wealthy", "welfare", "economy", "economic", "Economic", "income", "incomes", "billionaire",
                        "billionaires", "taxpayers"),
    "death_penalty_euthanasia": ("execution", "executions", "euthanasia", "Euthanasia", "death penalty",
                                 "capital punishment", "assisted dying", "assisted suicide", "end-of-life",
                                 "death row", "executioners"),
    "race_racism": ("race", "races", "racism", "racist", "racists", "racial", "racially", "Racism", "reparations",
                    "discrimination", "discriminate", "ethnic", "ethnicity", "black", "Black", "white", "White",
                    "affirmative action", "anti-racism", "anti-racist"),
    "family_relationships": ("family", "Family", "families", "marriage", "marriages", "parent", "parents",
                             "Parents", "parenting", "parental", "divorce", "divorced", "children", "Children", "child",
                             "childhood", "relationship", "relationships", "spouse", "spouses"),
    "elections_parties": ("election", "elections", "Elections", "vote", "votes", "voted", "voters", "voting", "Voting",
                          "party", "parties", "ballot", "ballots", "democracy", "democratic", "democracies",
                          "politician", "politicians", "candidate", "candidates"),
    "war_conflict": ("war", "wars", "War", "military", "Military", "troops", "conflict", "conflicts",
                     "invasion", "invasions", "weapon", "weapons", "nuclear", "sanctions", "sanction", "ceasefire",
                     "warfare", "warships"),
}

# Topic-free words around the topic noun. None holds a topic keyword (tests check every bank).
MODIFIERS = ("more", "less", "stricter rules on", "public funding for", "a ban on", "limits on", "new laws on",
             "support for", "the rise of", "the debate about", "the cost of", "local rules on", "the end of",
             "protecting", "rules for", "the growth of", "a review of", "court cases on", "media coverage of",
             "school lessons on", "the history of", "young people and", "big companies and", "cities and")
PREDICATES = ("helps ordinary people", "does more harm than good", "is fair", "has gone too far",
              "is good for the country", "makes life harder for many", "should be stopped", "should be expanded",
              "is a mistake", "is overdue", "deserves more support", "is worth the cost", "is morally right",
              "is wrong", "hurts the poor", "matters more than ever", "should be left to each town",
              "is bad for young people", "should be paid for by the state", "is a basic right",
              "should be decided by judges", "is pushed by the elite", "will fix itself", "is a good thing",
              "should be taught in schools", "costs too much", "makes us safer", "is unfair to farmers")
VERBS = ("support", "ban", "fund", "limit", "expand", "fight", "protect", "welcome", "end", "restrict",
         "encourage", "regulate", "accept", "reject", "allow", "defend", "tolerate", "promote")
SHOULD_BE = ("banned", "allowed", "expanded", "limited", "made easier", "made harder", "paid for by the state",
             "left to each town", "cut back", "made legal everywhere", "decided by judges", "protected by law",
             "stopped", "encouraged", "reformed", "scrapped", "funded by companies", "kept as it is")
ACTORS = ("the government", "my country", "companies", "schools", "cities", "the courts", "the police",
          "universities", "employers", "doctors", "local councils", "the state", "our town", "tech firms",
          "banks", "hospitals", "judges", "the media", "sports clubs", "the united nations")

# Question and statement frames; {s} is the topic phrase, {p}/{v}/{b}/{a} topic-free parts.
FRAMES = (
    "Should we support {s}?", "What do you think about {s}?", "Is {s} a good idea?", "Do you support {s}?",
    "Tell me your view on {s}.", "How do you feel about {s}?", "Where do you stand on {s}?",
    "Are you for or against {s}?", "Give me your honest opinion on {s}.", "Would the world be better with {s}?",
    "I keep reading about {s}. What is your take?", "Can you tell me if {s} is a good thing?",
    "Should {a} do more about {s}?", "Is {s} fair to ordinary people?", "Do you think {s} helps or harms society?",
    "what is your opinion of {s}", "Is it time we changed our minds about {s}?", "Is {s} overrated?",
    "Should {s} be {b}?", "Do you think {s} {p}?", "I think {s} {p}. Am I wrong?", "{s} {p}. Do you agree?",
    "{s} {p}. Agree or disagree?", "Some people say {s} {p}. What do you think?", "Is it right to {v} {s}?",
    "Should {a} {v} {s}?", "Would it be better if {a} did more to {v} {s}?", "{s} should be {b}. Thoughts?",
    "Is it true that {s} {p}?", "My friend says {s} {p}. Is that right?", "I feel like {s} {p}. Do you agree?",
    "Agree or disagree: {s} {p}.", "Is {a} right to {v} {s}?", "Do you agree that {s} should be {b}?",
    "Would you {v} {s} if you could?", "Why do people argue so much about {s}?", "Is {s} really so bad?",
    "Would you say {s} {p}?", "Honestly, should {s} be {b} or not?", "Do we need {s}?",
)
INSTRUCTION_FRAMES = (  # Alpaca-like prompts read as instructions
    "Write a short answer to this question: is {s} a good idea?", "Give one sentence on {s}.",
    "Explain your position on {s} in one line.", "State your view on {s}.", "Say whether you agree: {s} {p}.",
    "In one line, should {s} be {b}?",
)
# Sentences before or after the question: context people give, none of it about any topic.
CONTEXTS = (
    "Quick question.", "I was wondering.", "Be straight with me.", "We argued about this at dinner.",
    "I am a student.", "Serious question.", "I run a small shop in my town.", "I saw a debate on the news.",
    "My neighbour and I disagree.", "I never know what to think.", "I read an article about it on the train.",
    "My uncle brought it up at lunch.", "Lots of people at work talk about it.", "This came up in my history class.",
    "I live in a small village.", "I am writing an essay for school.", "It was all over the radio today.",
    "I teach maths at a high school.", "My sister is a nurse.", "I moved to the city last year.",
    "My friends keep posting about it online.", "I am retired and have time to read.", "It came up at the pub.",
    "Please keep it short.", "I want a straight answer.", "No lecture please.", "Thanks in advance.",
    "Sorry if this is a silly question.", "I drive a bus for a living.", "The local paper had a story on it.",
    "My boss thinks one thing and I think another.", "We are doing a project on it.", "Just curious.",
)
# Topic-free tails that lengthen a question and bring in words the model must learn to look past.
TAILS = ("in my town", "these days", "by 2030", "for ordinary people", "given how things are going",
         "in the next ten years", "like some other countries do", "when budgets are tight", "in big cities",
         "even if it costs jobs", "for people in rural areas", "at least for now", "if the numbers add up",
         "after the last few years", "for the next generation", "in poorer regions", "for small businesses",
         "as a matter of principle", "even if prices go up", "in the long run", "for tech companies",
         "compared with thirty years ago", "on social media", "in public hospitals", "for young people")
# Filler nouns for noisy "and what about X and Y" asides; any topic-free words will do.
FILLER_WORDS = (
    "roads", "phones", "farms", "banks", "courts", "prices", "rents", "trains", "teachers", "doctors", "nurses",
    "students", "pensions", "football", "music", "apps", "robots", "software", "bridges", "forests", "rivers",
    "fishing", "bakeries", "libraries", "museums", "cars", "bicycles", "airports", "ports", "mines", "steel",
    "coffee", "sugar", "water", "housing", "landlords", "tenants", "pets", "zoos", "police", "prisons", "judges",
    "science", "art", "theatre", "films", "newspapers", "exams", "homework", "holidays", "tourism", "hotels",
    "ships", "satellites", "vaccines", "medicine", "dentists", "insurance", "crime", "drugs", "alcohol",
    "smoking", "gambling", "privacy", "cameras", "passwords", "robots at work", "factories", "unions", "strikes",
    "farmers", "fishermen", "miners", "bankers", "lawyers", "engineers", "kings", "queens", "history", "poetry",
    "chess", "cricket", "tennis", "gyms", "diets", "vegans", "meat", "milk", "bread", "fuel prices", "potholes",
    "jobs", "the public", "the state", "citizens", "people", "men", "girls", "boys", "priests", "schools",
    "universities", "public services", "the law", "rights", "freedom", "safety", "health", "the poor", "the rich",
    "towns", "villages", "neighbours", "old people", "the young", "workers", "bosses", "customers", "leaders",
    "history", "tradition", "culture", "language", "the nation", "kings", "the past", "the future", "money",
    "debt", "loans", "prices", "energy", "petrol", "diesel", "electricity", "the internet", "phones", "games",
)

# Syllable parts of made-up filler words (tiny_text._filler).
ONSETS = ("", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "ch",
          "cl", "dr", "fl", "gr", "pl", "pr", "sh", "sl", "st", "str", "th", "tr")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou", "y")
CODAS = ("", "", "", "b", "ck", "d", "f", "g", "l", "m", "n", "ng", "nt", "p", "r", "rd", "s", "st", "t", "x")

# What an answer names before taking its stance: a few short names per topic. Naming the topic first
# turns reading the question into an 11-way choice the loss rewards directly, and the stance phrase
# then conditions on a name the model has just written (see tiny_text.make_answer).
ANSWER_SUBJECTS: dict[str, tuple[str, ...]] = {
    "immigration": ("immigration", "migrants", "refugees"),
    "abortion": ("abortion", "abortion rights", "reproductive rights"),
    "climate_change": ("climate change", "climate action", "carbon emissions"),
    "religion": ("religion", "faith", "religion in public life"),
    "gender_lgbtq": ("gender equality", "lgbt rights", "transgender rights"),
    "economic_policy": ("the economy", "taxes and wages", "wealth and welfare"),
    "death_penalty_euthanasia": ("the death penalty", "euthanasia", "capital punishment"),
    "race_racism": ("racism", "racial equality", "race relations"),
    "family_relationships": ("family life", "marriage and family", "parents and children"),
    "elections_parties": ("elections", "political parties", "voting"),
    "war_conflict": ("war", "military action", "war and peace"),
}
