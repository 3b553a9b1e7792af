"""Write examples/sample_data.jsonl (300 alpaca rows) and examples/preferences.jsonl (200 pairs).

Run from anywhere: ``python examples/make_sample_data.py``. Deterministic (seeded).

Mechanical rows (arithmetic, unit conversions, word puzzles, number facts) are computed here,
so their answers are correct by construction. Everything else is hand-written in
``examples/_sample_items.py``. Preference pairs reuse those prompts: the chosen answer is the
good one; the rejected answer is a computed plausible mistake for mechanical rows, a wrong label
for classification rows, and a hand-written wrong, buggy, rude or rambling answer otherwise.
"""

from __future__ import annotations

import json
import os
import random
from fractions import Fraction

HERE = os.path.dirname(os.path.abspath(__file__))

N_SAMPLES = 300
N_PREFERENCES = 200


def _num(x: float | Fraction, places: int = 2) -> str:
    """A number without trailing zeros: 3.10 -> 3.1, 4.00 -> 4."""
    text = f"{float(x):,.{places}f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


# ---------------------------------------------------------------- arithmetic


def arithmetic(rng: random.Random, n: int) -> list[dict]:
    rows = []
    kinds = ["add", "sub", "mul", "div", "pct", "word"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "add":
            a, b = rng.randint(12, 999), rng.randint(12, 999)
            q, ans, wrong = f"{a} + {b}", a + b, a + b + rng.choice([-10, 10, 1, -1])
            rows.append(_arith_row(rng, q, f"{a} + {b} = {ans}.", f"{a} + {b} = {wrong}."))
        elif kind == "sub":
            a, b = rng.randint(50, 999), rng.randint(11, 49)
            q, ans = f"{a} - {b}", a - b
            wrong = a + b  # a classic slip: added instead of subtracted
            rows.append(_arith_row(rng, q, f"{a} - {b} = {ans}.", f"{a} - {b} = {wrong}."))
        elif kind == "mul":
            a, b = rng.randint(3, 25), rng.randint(3, 19)
            q, ans = f"{a} × {b}", a * b
            wrong = a * (b - 1)
            rows.append(_arith_row(rng, q, f"{a} × {b} = {ans}.", f"{a} × {b} = {wrong}."))
        elif kind == "div":
            b, ans = rng.randint(2, 12), rng.randint(3, 40)
            a = b * ans
            q = f"{a} ÷ {b}"
            rows.append(_arith_row(rng, q, f"{a} ÷ {b} = {ans}.", f"{a} ÷ {b} = {ans + 1}."))
        elif kind == "pct":
            p = rng.choice([5, 10, 15, 20, 25, 30, 40, 50, 75])
            base = rng.choice([20, 40, 60, 80, 120, 160, 200, 240, 300, 360, 400, 500])
            ans = Fraction(p * base, 100)
            rows.append(
                {
                    "instruction": f"What is {p}% of {base}?",
                    "input": "",
                    "output": f"{p}% of {base} is {_num(ans)}, because {base} × {p}/100 = {_num(ans)}.",
                    "rejected": f"{p}% of {base} is {_num(Fraction(base * 100, p))}.",
                }
            )
        else:  # short word problem
            apples, eaten, price = rng.randint(8, 30), rng.randint(2, 7), rng.randint(2, 9)
            left = apples - eaten
            rows.append(
                {
                    "instruction": "Solve the word problem and give the answer with a short explanation.",
                    "input": f"Sam has {apples} apples and eats {eaten}. He sells the rest for ${price} each. "
                    "How much money does he get?",
                    "output": f"Sam has {apples} - {eaten} = {left} apples left. "
                    f"Selling them at ${price} each gives {left} × ${price} = ${left * price}.",
                    "rejected": f"Sam gets {apples} × ${price} = ${apples * price}.",
                }
            )
    return rows


def _arith_row(rng: random.Random, q: str, good: str, bad: str) -> dict:
    style = rng.randrange(3)
    if style == 0:
        return {"instruction": f"What is {q}?", "input": "", "output": good, "rejected": bad}
    if style == 1:
        return {"instruction": "Calculate the following.", "input": q, "output": good, "rejected": bad}
    return {"instruction": f"Compute {q} and show the result.", "input": "", "output": good, "rejected": bad}


# ---------------------------------------------------------------- unit conversions

# (from unit, its singular, to unit, factor, wrong factor: a plausible mistake such as the
# inverse factor or the imperial gallon)
LINEAR = [
    ("kilometers", "kilometer", "miles", 0.621371, 1.609344),
    ("miles", "mile", "kilometers", 1.609344, 0.621371),
    ("kilograms", "kilogram", "pounds", 2.20462, 0.453592),
    ("pounds", "pound", "kilograms", 0.453592, 2.20462),
    ("inches", "inch", "centimeters", 2.54, 0.3937),
    ("feet", "foot", "meters", 0.3048, 3.28084),
    ("meters", "meter", "feet", 3.28084, 0.3048),
    ("liters", "liter", "milliliters", 1000, 100),
    ("hours", "hour", "minutes", 60, 100),
    ("days", "day", "hours", 24, 12),
    ("US gallons", "US gallon", "liters", 3.78541, 4.54609),
    ("grams", "gram", "ounces", 0.035274, 28.3495),
]
EXACT = {"inches", "feet", "liters", "hours", "days"}


def conversions(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        if i % 6 == 5:
            rows.append(_temperature(rng, i))
            continue
        src, one, dst, factor, wrong_factor = LINEAR[i % len(LINEAR)]
        value = rng.choice([2, 3, 5, 7, 8, 10, 12, 15, 20, 25, 40, 50, 100])
        result = value * factor
        approx = "" if src in EXACT else "about "
        unit_text = f"1 {one} = {_num(factor, 6)} {dst}"
        rows.append(
            {
                "instruction": rng.choice(
                    [f"Convert {value} {src} to {dst}.", f"How many {dst} are in {value} {src}?"]
                ),
                "input": "",
                "output": f"{value} {src} is {approx}{_num(result)} {dst} ({unit_text}).",
                "rejected": f"{value} {src} is {_num(value * wrong_factor)} {dst}.",
            }
        )
    return rows


def _temperature(rng: random.Random, i: int) -> dict:
    if (i // 6) % 2 == 0:
        c = rng.choice([-40, -10, 0, 5, 15, 20, 25, 30, 37, 40, 100])
        f = Fraction(c * 9, 5) + 32
        return {
            "instruction": f"Convert {c}°C to Fahrenheit.",
            "input": "",
            "output": f"{c}°C is {_num(f, 1)}°F (°F = °C × 9/5 + 32).",
            "rejected": f"{c}°C is {_num(Fraction(c * 9, 5), 1)}°F.",  # forgot the + 32
        }
    f = rng.choice([32, 50, 68, 77, 86, 98.6, 212, -4, 14, 104])
    c = (Fraction(str(f)) - 32) * Fraction(5, 9)
    return {
        "instruction": f"Convert {_num(f, 1)}°F to Celsius.",
        "input": "",
        "output": f"{_num(f, 1)}°F is {_num(c, 1)}°C (°C = (°F − 32) × 5/9).",
        "rejected": f"{_num(f, 1)}°F is {_num(Fraction(str(f)) * Fraction(5, 9), 1)}°C.",  # forgot − 32
    }


# ---------------------------------------------------------------- words and numbers

WORDS = [
    "necessary", "rhythm", "education", "banana", "library", "kitchen", "umbrella", "giraffe",
    "strength", "queue", "mountain", "alphabet", "question", "keyboard", "elephant", "symphony",
    "calendar", "whisper", "orchestra", "bicycle", "lantern", "journey", "volcano", "pyramid",
]
WORD_SETS = [
    ["pear", "apple", "mango", "cherry"],
    ["zebra", "otter", "badger", "camel", "lynx"],
    ["violin", "drum", "flute", "harp"],
    ["Tuesday", "Monday", "Sunday", "Friday"],
    ["silver", "copper", "gold", "iron", "tin"],
    ["river", "ocean", "lake", "pond", "creek"],
    ["Oslo", "Lima", "Cairo", "Berlin", "Delhi"],
    ["python", "java", "rust", "go", "kotlin"],
]


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))


def word_and_number_tasks(rng: random.Random, n: int) -> list[dict]:
    rows = []
    words = WORDS[:]
    rng.shuffle(words)
    for i in range(n):
        kind = i % 5
        word = words[i % len(words)]
        if kind == 0:
            rev = word[::-1]
            rows.append({"instruction": f"Spell the word \"{word}\" backwards.", "input": "",
                         "output": rev, "rejected": rev[1:] + rev[0]})
        elif kind == 1:
            vowels = sum(ch in "aeiou" for ch in word)
            rows.append({"instruction": f"How many vowels (a, e, i, o, u) are in the word \"{word}\"?",
                         "input": "", "output": f"\"{word}\" has {vowels} vowel{'s' if vowels != 1 else ''}.",
                         "rejected": f"\"{word}\" has {len(word)} vowels."})
        elif kind == 2:
            ws = WORD_SETS[(i // 5) % len(WORD_SETS)]
            rows.append({"instruction": "Sort these words in alphabetical order.", "input": ", ".join(ws),
                         "output": ", ".join(sorted(ws, key=str.lower)),
                         "rejected": ", ".join(sorted(ws, key=len))})
        elif kind == 3:
            num = rng.randint(20, 199)
            if _is_prime(num):
                good, bad = f"Yes, {num} is prime: it has no divisors other than 1 and itself.", f"No, {num} is not prime."
            else:
                d = next(d for d in range(2, num) if num % d == 0)
                good = f"No, {num} is not prime: it equals {d} × {num // d}."
                bad = f"Yes, {num} is prime."
            rows.append({"instruction": f"Is {num} a prime number?", "input": "", "output": good, "rejected": bad})
        else:
            num = rng.randint(100, 9999)
            parity = "even" if num % 2 == 0 else "odd"
            other = "odd" if parity == "even" else "even"
            rows.append({"instruction": "Classify the number as even or odd.", "input": str(num),
                         "output": f"{num} is {parity}.", "rejected": f"{num} is {other}."})
    return rows


# ---------------------------------------------------------------- hand-written rows
# (instruction, input, good output, rejected output). Rejected answers are deliberately worse:
# wrong, buggy, rude, off-topic or rambling.

DEFINITIONS = [
    ("Define photosynthesis.", "",
     "Photosynthesis is the process by which plants, algae and some bacteria use sunlight to turn carbon dioxide and water into glucose, releasing oxygen as a by-product.",
     "Photosynthesis is how plants absorb oxygen at night and turn it into soil nutrients."),
    ("What is an algorithm?", "",
     "An algorithm is a finite, step-by-step set of instructions for solving a problem or completing a task, like a recipe or the steps a computer follows to sort a list.",
     "Seriously? Look it up yourself, it's a basic word."),
    ("Explain what democracy means in one or two sentences.", "",
     "Democracy is a system of government in which power belongs to the people, who rule directly or through representatives they choose in free and fair elections.",
     "Many people enjoy going to the beach in summer, especially when the weather is warm and sunny."),
    ("What is inflation in economics?", "",
     "Inflation is the general rise in prices over time, which means each unit of money buys fewer goods and services than before.",
     "Inflation is when prices across the whole economy keep falling every year."),
    ("Define the word 'metaphor'.", "",
     "A metaphor is a figure of speech that describes something by saying it is something else, such as \"time is a thief\", without using \"like\" or \"as\".",
     "Well, a metaphor, which is a word a lot of people use, and it comes from Greek I think, or maybe Latin, is sort of like when you say things, and there are many kinds of things you can say, and some of them are metaphors and some are not, depending on various factors and who is listening."),
    ("What is gravity?", "",
     "Gravity is the force of attraction between objects with mass. On Earth it pulls things toward the ground and gives them weight; it also keeps the Moon orbiting Earth and the planets orbiting the Sun.",
     "Gravity is a force created by Earth's magnetic field that pulls only metal objects downward."),
    ("Define ecosystem.", "",
     "An ecosystem is a community of living organisms interacting with each other and with their physical environment, such as soil, water and climate, in a particular area.",
     "Not my job to teach you biology."),
    ("What is an atom?", "",
     "An atom is the smallest unit of a chemical element that keeps its chemical properties. It has a nucleus of protons and neutrons surrounded by electrons.",
     "An atom is a tiny cell that makes up all living things and contains DNA."),
    ("What is the difference between an atom and a molecule?", "",
     "An atom is a single particle of an element, such as one oxygen atom. A molecule is two or more atoms chemically bonded together, such as O₂ or H₂O.",
     "There is no difference; atom and molecule are two words for the same thing."),
    ("What is a noun?", "",
     "A noun is a word that names a person, place, thing or idea, for example \"teacher\", \"London\", \"chair\" or \"freedom\".",
     "A noun is a word that describes an action, like \"run\" or \"jump\"."),
    ("What is a verb?", "",
     "A verb is a word that expresses an action, an occurrence or a state of being, such as \"run\", \"become\" or \"is\".",
     "The word 'verb' has four letters, and my favorite color is green."),
    ("What is an adjective? Give two examples.", "",
     "An adjective is a word that describes or modifies a noun. Examples: \"blue\" in \"a blue car\" and \"tall\" in \"a tall tree\".",
     "An adjective is a word that replaces a noun, like \"he\" or \"they\"."),
    ("Define a prime number.", "",
     "A prime number is a whole number greater than 1 whose only divisors are 1 and itself, such as 2, 3, 5, 7 and 11.",
     "A prime number is any odd number, like 9, 15 or 21."),
    ("What makes an animal a mammal?", "",
     "Mammals are warm-blooded vertebrates that have hair or fur, breathe air and feed their young with milk from mammary glands. Most give birth to live young.",
     "An animal is a mammal if it lives on land; anything that lives in water is a fish."),
    ("What is a volcano?", "",
     "A volcano is an opening in Earth's crust through which molten rock (magma), ash and gases escape from below the surface, often building up a mountain over time.",
     "It's a mountain that explodes, obviously. Next question."),
    ("What is a budget?", "",
     "A budget is a plan that estimates income and expenses over a period of time, helping a person or organisation decide how to spend and save money.",
     "A budget is something related to money, and money is something everyone needs, and people have needed money for thousands of years ever since they stopped trading cows and grain, which is interesting because cows are still valuable today in many places, so in a way a budget is a bit like a cow."),
    ("What does a compiler do?", "",
     "A compiler translates source code written in a high-level programming language into a lower-level form, such as machine code, that a computer can execute, usually before the program runs.",
     "A compiler is a program that deletes unused files from your hard drive to free up space."),
    ("In programming, what is a variable?", "",
     "A variable is a named storage location that holds a value, such as a number or a piece of text, which the program can read and change while it runs.",
     "If you don't know what a variable is, you shouldn't be programming."),
    ("What is an API?", "",
     "An API (application programming interface) is a defined set of rules that lets one piece of software request data or services from another without knowing how it works inside.",
     "API stands for Automatic Program Installer; it installs apps on your phone."),
    ("Define osmosis.", "",
     "Osmosis is the movement of water molecules through a semi-permeable membrane from a region of lower solute concentration to a region of higher solute concentration.",
     "Osmosis is the movement of salt from a dilute solution into a concentrated one through a solid wall."),
    ("What is evaporation?", "",
     "Evaporation is the process in which a liquid turns into a gas at its surface as its molecules gain enough energy, as when puddles dry in the sun.",
     "Evaporation is when water vapor cools and turns back into liquid droplets."),
    ("What is a hypothesis in science?", "",
     "A hypothesis is a proposed, testable explanation for an observation, which scientists check through experiments or further observation.",
     "Science class is usually held in a laboratory with lots of glassware."),
    ("What is renewable energy?", "",
     "Renewable energy comes from sources that are naturally replenished on a human timescale, such as sunlight, wind, flowing water and geothermal heat, unlike fossil fuels, which run out.",
     "Renewable energy is energy from coal and oil, because new deposits form every year."),
    ("What is a peninsula?", "",
     "A peninsula is a piece of land almost surrounded by water but connected to the mainland on one side, such as Italy or Florida.",
     "A peninsula is a piece of land completely surrounded by water."),
    ("What are synonyms? Give an example.", "",
     "Synonyms are words with the same or nearly the same meaning, for example \"big\" and \"large\".",
     "Synonyms are words with opposite meanings, like \"hot\" and \"cold\"."),
    ("What is an antonym?", "",
     "An antonym is a word with the opposite meaning of another word, such as \"hot\" and \"cold\" or \"happy\" and \"sad\".",
     "Ugh, another vocabulary question. Figure it out."),
    ("What is a fraction?", "",
     "A fraction represents part of a whole. It is written as a numerator over a denominator, like 3/4, meaning 3 of 4 equal parts.",
     "A fraction is a number larger than one, like 3/4 or 7."),
    ("What is the perimeter of a shape?", "",
     "The perimeter is the total distance around the outside of a two-dimensional shape. For a rectangle it is 2 × (length + width).",
     "The perimeter is the space inside a shape, found by multiplying the length by the width."),
    ("What is a habitat?", "",
     "A habitat is the natural home or environment where a plant, animal or other organism lives and finds food, water, shelter and space.",
     "Habits are hard to break; try a 30-day challenge."),
    ("How does a vaccine work?", "",
     "A vaccine trains the immune system by exposing it to a harmless piece or weakened form of a germ, so the body learns to recognise and fight the real infection faster later.",
     "A vaccine works by killing all the bacteria in your body, including the good ones."),
    ("What is bandwidth in computer networking?", "",
     "Bandwidth is the maximum rate at which data can be transferred over a network connection, usually measured in bits per second, such as 100 Mbps.",
     "Bandwidth, hmm, it's like a band, which could be a music band or a rubber band, and width is how wide something is, so bandwidth is about how wide a band is, which in networking kind of matters, probably, in a lot of ways, depending on the network and the band."),
    ("What is encryption?", "",
     "Encryption converts readable data into a coded form using a key, so that only someone with the right key can decode and read it.",
     "Encryption is compressing a file so that it takes up less disk space."),
    ("What is a recession?", "",
     "A recession is a significant, widespread decline in economic activity lasting months, usually with falling GDP, rising unemployment and lower spending. A common rule of thumb is two consecutive quarters of shrinking GDP.",
     "Read a newspaper for once."),
    ("What is irony?", "",
     "Irony is a contrast between what is expected and what actually happens, or between what is said and what is meant, such as a fire station burning down.",
     "Irony is anything unlucky or sad, like rain on your day off."),
    ("What is a haiku?", "",
     "A haiku is a short Japanese poem of three lines with a 5-7-5 syllable pattern, traditionally about nature or a season.",
     "A haiku is a fourteen-line poem that always rhymes."),
]

REWRITING = [
    ("Rewrite the sentence in the passive voice.", "The chef cooked a delicious meal.",
     "A delicious meal was cooked by the chef.", "The chef was cooking a delicious meal."),
    ("Rewrite the sentence in the active voice.", "The letter was written by Maria.",
     "Maria wrote the letter.", "The letter was being written by Maria."),
    ("Make this sentence more formal.", "Hey, can you send me that report ASAP?",
     "Could you please send me the report at your earliest convenience?", "Yo, send the report now."),
    ("Fix the grammar in this sentence.", "She don't like going to school on mondays.",
     "She doesn't like going to school on Mondays.", "She don't likes going to school on mondays."),
    ("Fix the grammar.", "Me and him goes to the park every day.",
     "He and I go to the park every day.", "Me and him go to the park every days."),
    ("Rewrite the sentence to be more concise.",
     "Due to the fact that it was raining, we made the decision to stay inside.",
     "Because it was raining, we decided to stay inside.",
     "Due to the fact of the rain that was falling, we then made the decision that we would stay inside the house."),
    ("Summarize the paragraph in one sentence.",
     "Honeybees live in colonies with a single queen, thousands of female workers and a few hundred males called drones. "
     "Workers collect nectar and pollen, build the comb and care for the young, while the queen lays eggs and the drones "
     "mate with queens from other colonies.",
     "A honeybee colony has one egg-laying queen, many female workers who gather food, build comb and raise the young, and a few male drones whose job is mating.",
     "Bees are insects."),
    ("Rewrite this sentence in the past tense.", "I walk to the store and buy some milk.",
     "I walked to the store and bought some milk.", "I will walk to the store and buy some milk."),
    ("Rewrite this sentence in the future tense.", "They play football in the park.",
     "They will play football in the park.", "They played football in the park."),
    ("Make the sentence sound more polite.", "Give me the menu.",
     "Could I please have the menu?", "Menu. Now."),
    ("Paraphrase this sentence.", "The meeting has been postponed until next week.",
     "The meeting has been moved to next week.", "The meeting has been cancelled forever."),
    ("Rewrite the sentence without using the word 'very'.",
     "The movie was very good and the actors were very talented.",
     "The movie was excellent and the actors were remarkably talented.",
     "The movie was very, very good and the actors were very talented."),
    ("Turn this statement into a question.", "The train leaves at 6 p.m.",
     "Does the train leave at 6 p.m.?", "The train leaves at 6 p.m."),
    ("Correct the punctuation.", "whats your name asked the teacher",
     "\"What's your name?\" asked the teacher.", "whats your name, asked the teacher"),
    ("Rewrite the sentence so a young child can understand it.", "Precipitation is likely throughout the afternoon.",
     "It will probably rain this afternoon.", "Atmospheric moisture condensation events are probable."),
    ("Convert this sentence to reported speech.", "He said, \"I am tired.\"",
     "He said that he was tired.", "He said I am tired."),
    ("Combine the two sentences into one.", "The sun set. The sky turned orange.",
     "As the sun set, the sky turned orange.", "The sun set the sky orange turned."),
    ("Rewrite the sentence using simpler words.", "The committee will commence deliberations forthwith.",
     "The committee will start discussing it right away.",
     "The committee shall initiate deliberative proceedings with immediate effect."),
    ("Rewrite the headline in sentence case.", "Local Team Wins The Championship After Ten Years",
     "Local team wins the championship after ten years", "LOCAL TEAM WINS THE CHAMPIONSHIP AFTER TEN YEARS"),
    ("Remove the redundancy in this sentence.", "We need to plan ahead for the future.",
     "We need to plan for the future.", "We need to plan ahead in advance for the future ahead."),
    ("Rewrite this sentence in the first person.", "She finished her homework before dinner.",
     "I finished my homework before dinner.", "They finished their homework before dinner."),
    ("Make this product description more exciting.", "This bottle keeps drinks cold.",
     "Stay refreshed all day: this insulated bottle keeps your drinks ice-cold for hours.", "It is a bottle."),
    ("Rewrite the sentence as a negative statement.", "I have finished the report.",
     "I have not finished the report.", "I have finished the report already."),
    ("Fix the spelling mistakes.", "I recieved the pakage yesterday and it was definately worth the wait.",
     "I received the package yesterday and it was definitely worth the wait.",
     "I recieved the package yesterday and it was definately worth the wait."),
    ("Shorten this email opening to one friendly sentence.",
     "I hope this message finds you well and that you have been having a wonderful week so far, with good weather and plenty of rest.",
     "I hope you're having a great week!",
     "I hope this message finds you well and that your week has been wonderful so far, with good weather, plenty of rest, nice meals and good company."),
    ("Rewrite the sentence to remove gendered language.", "Every student must bring his own laptop.",
     "Every student must bring their own laptop.", "Every boy must bring his own laptop."),
    ("Rewrite this text message in standard English.", "c u l8r, gotta go 2 the gym",
     "See you later, I have to go to the gym.", "c u later gotta go gym"),
    ("Put the words in the correct order to make a sentence.", "dog the park the in ran",
     "The dog ran in the park.", "The park ran in the dog."),
    ("Change the sentence from plural to singular.", "The cats are sleeping on the sofas.",
     "The cat is sleeping on the sofa.", "The cat are sleeping on the sofas."),
    ("Rewrite this sentence so that it starts with 'Although'.", "It was cold, but we went swimming.",
     "Although it was cold, we went swimming.", "Although it was cold, but we went swimming."),
]

FACTS = [
    ("What is the capital of France?", "", "The capital of France is Paris.", "The capital of France is Lyon."),
    ("What is the capital of Japan?", "", "The capital of Japan is Tokyo.", "The capital of Japan is Kyoto."),
    ("What is the capital of Australia?", "", "The capital of Australia is Canberra.", "The capital of Australia is Sydney."),
    ("What is the capital of Canada?", "", "The capital of Canada is Ottawa.", "The capital of Canada is Toronto."),
    ("What is the capital of Brazil?", "", "The capital of Brazil is Brasília.", "The capital of Brazil is Rio de Janeiro."),
    ("What is the capital of Kenya?", "", "The capital of Kenya is Nairobi.", "The capital of Kenya is Mombasa."),
    ("What is the capital of Egypt?", "", "The capital of Egypt is Cairo.", "The capital of Egypt is Alexandria."),
    ("What is the capital of Spain?", "", "The capital of Spain is Madrid.", "The capital of Spain is Barcelona."),
    ("What is the capital of Germany?", "", "The capital of Germany is Berlin.", "Why would I know? I'm not a map."),
    ("Which is the largest planet in our solar system?", "",
     "Jupiter is the largest planet in our solar system.", "Saturn is the largest planet in our solar system."),
    ("At what temperature does water boil at sea level?", "",
     "At sea level, water boils at 100°C (212°F).", "Water boils at 50°C at sea level."),
    ("What is the chemical symbol for gold?", "",
     "The chemical symbol for gold is Au, from the Latin word aurum.", "The chemical symbol for gold is Go."),
    ("What is the chemical symbol for sodium?", "",
     "The chemical symbol for sodium is Na, from the Latin natrium.", "The chemical symbol for sodium is So."),
    ("What is the chemical symbol for iron?", "",
     "The chemical symbol for iron is Fe, from the Latin ferrum.", "The chemical symbol for iron is Ir."),
    ("How many continents are there?", "",
     "By the most common convention there are seven: Africa, Antarctica, Asia, Australia (Oceania), Europe, North America and South America.",
     "There are twelve continents."),
    ("What is the largest ocean on Earth?", "",
     "The Pacific Ocean is the largest and deepest ocean on Earth.", "The Atlantic Ocean is the largest ocean on Earth."),
    ("Who wrote 'Romeo and Juliet'?", "", "William Shakespeare wrote 'Romeo and Juliet'.", "Charles Dickens wrote 'Romeo and Juliet'."),
    ("Who wrote 'Pride and Prejudice'?", "",
     "Jane Austen wrote 'Pride and Prejudice', published in 1813.", "Charlotte Brontë wrote 'Pride and Prejudice' in 1900."),
    ("Who painted the Mona Lisa?", "",
     "Leonardo da Vinci painted the Mona Lisa in the early 16th century.", "Vincent van Gogh painted the Mona Lisa."),
    ("How fast does light travel in a vacuum?", "",
     "Light travels at about 299,792 kilometers per second (roughly 186,282 miles per second) in a vacuum.",
     "Light travels at about 300 kilometers per hour."),
    ("Which planet is closest to the Sun?", "", "Mercury is the planet closest to the Sun.", "Venus is the planet closest to the Sun."),
    ("At what temperature does pure water freeze?", "",
     "Pure water freezes at 0°C (32°F) at standard atmospheric pressure.", "Google it."),
    ("How many days are in a leap year?", "",
     "A leap year has 366 days; the extra day is February 29.", "A leap year has 365 days plus an extra week."),
    ("How many sides does a hexagon have?", "", "A hexagon has six sides.", "A hexagon has eight sides."),
    ("What is the highest mountain above sea level?", "",
     "Mount Everest, at about 8,849 meters (29,032 feet) above sea level.", "K2 is the highest mountain above sea level."),
    ("What is the hardest naturally occurring substance?", "",
     "Diamond is the hardest naturally occurring substance.", "Gold is the hardest natural substance."),
    ("What is the largest animal on Earth?", "",
     "The blue whale is the largest animal known to have lived, reaching about 30 meters in length.",
     "The African elephant is the largest animal on Earth."),
    ("How many bones are in the adult human body?", "",
     "An adult human skeleton typically has 206 bones.", "An adult human body has about 1,000 bones."),
    ("What is the chemical formula for water?", "",
     "The chemical formula for water is H₂O: two hydrogen atoms bonded to one oxygen atom.", "The chemical formula for water is HO₂."),
    ("What is the chemical name for table salt?", "",
     "Table salt is sodium chloride, NaCl.", "Table salt is calcium carbonate."),
    ("Who wrote the novel '1984'?", "",
     "George Orwell wrote '1984', published in 1949.", "Aldous Huxley wrote '1984'."),
    ("Who was the first person to walk on the Moon?", "",
     "Neil Armstrong, on July 20, 1969, during the Apollo 11 mission.", "Yuri Gagarin walked on the Moon in 1961."),
    ("Which planet is known as the Red Planet?", "",
     "Mars is called the Red Planet because iron oxide (rust) on its surface gives it a reddish color.",
     "Jupiter is called the Red Planet because of its Great Red Spot."),
    ("How many players does a soccer team have on the field?", "",
     "Each team has 11 players on the field, including the goalkeeper.", "Each soccer team has 9 players on the field."),
    ("Which gas do plants take in from the air for photosynthesis?", "",
     "Plants take in carbon dioxide (CO₂) for photosynthesis.",
     "Plants take in oxygen and release carbon dioxide during photosynthesis."),
    ("What is the currency of Japan?", "", "The currency of Japan is the yen.", "Japan is famous for its cherry blossoms in spring."),
    ("What is the official language of Brazil?", "",
     "The official language of Brazil is Portuguese.", "Spanish is the official language of Brazil."),
    ("Who developed the theory of relativity?", "",
     "Albert Einstein: special relativity in 1905 and general relativity in 1915.", "Isaac Newton developed it in 1905."),
    ("In which year did World War II end?", "", "World War II ended in 1945.", "World War II ended in 1939."),
    ("What does DNA stand for?", "", "DNA stands for deoxyribonucleic acid.", "DNA stands for dynamic nuclear atom."),
]

# Label sets for classification rows; a row's rejected answer swaps in another label.
CLASSIFICATION = {
    "sentiment": ["Positive", "Negative", "Neutral"],
    "animal": ["mammal", "bird", "reptile", "amphibian", "fish"],
    "produce": ["fruit", "vegetable"],
    "state": ["solid", "liquid", "gas"],
    "energy": ["renewable", "non-renewable"],
    "claim": ["Fact", "Opinion"],
}
_SENTIMENT = "Classify the sentiment of this review as Positive, Negative or Neutral."
_ANIMAL = "Is this animal a mammal, bird, reptile, amphibian or fish?"
_PRODUCE = "In everyday cooking terms, is this a fruit or a vegetable?"
_STATE = "Is this substance a solid, liquid or gas at room temperature?"
_ENERGY = "Is this energy source renewable or non-renewable?"
_CLAIM = "Is this statement a fact or an opinion?"

# (instruction, input, output, label set, the right label as it appears in output)
CLASSIFIED = [
    (_SENTIMENT, "The food was amazing and the staff were so friendly!", "Positive: the reviewer praises the food and the staff.", "sentiment", "Positive"),
    (_SENTIMENT, "I waited an hour and my order was still wrong.", "Negative: the reviewer complains about the wait and a wrong order.", "sentiment", "Negative"),
    (_SENTIMENT, "The package arrived on Tuesday.", "Neutral: it states a fact without expressing a feeling.", "sentiment", "Neutral"),
    (_SENTIMENT, "Absolutely love this phone, the battery lasts forever.", "Positive: the reviewer loves the phone and its battery life.", "sentiment", "Positive"),
    (_SENTIMENT, "The hotel room was dirty and smelled of smoke.", "Negative: the reviewer describes a dirty, smoky room.", "sentiment", "Negative"),
    (_SENTIMENT, "The book has 320 pages and comes in paperback.", "Neutral: it only describes the book.", "sentiment", "Neutral"),
    (_SENTIMENT, "Worst customer service I have ever experienced.", "Negative: the reviewer calls the service the worst they have had.", "sentiment", "Negative"),
    (_SENTIMENT, "This course finally made statistics make sense to me.", "Positive: the reviewer says the course helped them understand statistics.", "sentiment", "Positive"),
    (_ANIMAL, "dolphin", "A dolphin is a mammal: it breathes air and feeds its young milk.", "animal", "mammal"),
    (_ANIMAL, "penguin", "A penguin is a bird, even though it cannot fly.", "animal", "bird"),
    (_ANIMAL, "frog", "A frog is an amphibian: it starts life in water as a tadpole.", "animal", "amphibian"),
    (_ANIMAL, "shark", "A shark is a fish, with a skeleton made of cartilage.", "animal", "fish"),
    (_ANIMAL, "crocodile", "A crocodile is a reptile.", "animal", "reptile"),
    (_ANIMAL, "bat", "A bat is a mammal, the only one capable of true flight.", "animal", "mammal"),
    (_ANIMAL, "salamander", "A salamander is an amphibian.", "animal", "amphibian"),
    (_PRODUCE, "carrot", "A carrot is a vegetable; it is a root.", "produce", "vegetable"),
    (_PRODUCE, "strawberry", "A strawberry is a fruit.", "produce", "fruit"),
    (_PRODUCE, "broccoli", "Broccoli is a vegetable.", "produce", "vegetable"),
    (_PRODUCE, "mango", "A mango is a fruit.", "produce", "fruit"),
    (_PRODUCE, "spinach", "Spinach is a vegetable, a leafy green.", "produce", "vegetable"),
    (_STATE, "oxygen", "Oxygen is a gas at room temperature.", "state", "gas"),
    (_STATE, "mercury (the metal)", "Mercury is a liquid at room temperature, which is unusual for a metal.", "state", "liquid"),
    (_STATE, "iron", "Iron is a solid at room temperature.", "state", "solid"),
    (_STATE, "olive oil", "Olive oil is a liquid at room temperature.", "state", "liquid"),
    (_ENERGY, "wind power", "Wind power is renewable: the wind keeps blowing.", "energy", "renewable"),
    (_ENERGY, "coal", "Coal is non-renewable: it took millions of years to form.", "energy", "non-renewable"),
    (_ENERGY, "solar power", "Solar power is renewable: sunlight is replenished every day.", "energy", "renewable"),
    (_ENERGY, "natural gas", "Natural gas is non-renewable: it is a fossil fuel.", "energy", "non-renewable"),
    (_CLAIM, "Paris is the capital of France.", "Fact: it can be checked and is true.", "claim", "Fact"),
    (_CLAIM, "Chocolate ice cream is the best flavor.", "Opinion: it expresses a personal preference.", "claim", "Opinion"),
]

LISTS = [
    ("List the planets of the solar system in order from the Sun.", "",
     "Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, Neptune.",
     "Mercury, Venus, Earth, Mars, Saturn, Jupiter, Neptune, Uranus, Pluto."),
    ("Name the three states of matter commonly taught in school.", "", "Solid, liquid and gas.", "Solid, liquid and water."),
    ("List the colors of the rainbow in order.", "",
     "Red, orange, yellow, green, blue, indigo, violet.", "Red, green, blue, pink, purple, white, black."),
    ("List five countries in South America.", "",
     "Brazil, Argentina, Chile, Peru and Colombia.", "Brazil, Mexico, Spain, Cuba and Portugal."),
    ("Name the five Great Lakes of North America.", "",
     "Superior, Michigan, Huron, Erie and Ontario.", "Superior, Michigan, Victoria, Titicaca and Baikal."),
    ("List the noble gases.", "",
     "Helium, neon, argon, krypton, xenon and radon, plus the synthetic element oganesson.",
     "Oxygen, nitrogen, hydrogen and carbon dioxide."),
    ("Name the three main types of rock.", "", "Igneous, sedimentary and metamorphic.", "Granite, pebbles and sand."),
    ("List the first five prime numbers.", "", "2, 3, 5, 7, 11.", "1, 3, 5, 7, 9."),
    ("List the months that have 31 days.", "",
     "January, March, May, July, August, October and December.", "January, March, June, September and November."),
    ("Give four tips for getting better sleep.", "",
     "1. Keep a regular sleep schedule.\n2. Avoid caffeine in the afternoon and evening.\n3. Keep your bedroom dark, quiet and cool.\n4. Put screens away 30–60 minutes before bed.",
     "Just sleep more. It's not complicated."),
    ("List three benefits of regular exercise.", "",
     "1. A stronger heart and lungs.\n2. Better mood and less stress.\n3. Stronger muscles and bones and easier weight control.",
     "Exercise is good. Also, the first Olympic Games were held in ancient Greece, and the marathon is named after a town."),
    ("List the steps to make a cup of black tea.", "",
     "1. Boil fresh water.\n2. Put a tea bag in a cup.\n3. Pour the hot water over it.\n4. Steep for 3–5 minutes.\n5. Remove the bag and add milk or sugar if you like.",
     "Put the tea bag in cold water and drink it right away."),
    ("List the four seasons.", "", "Spring, summer, autumn (fall) and winter.", "Spring, summer and monsoon."),
    ("Name the string instruments of a standard symphony orchestra.", "",
     "Violin, viola, cello and double bass; a harp is often included too.", "Trumpet, flute, drums and piano."),
    ("List three structures found in plant cells but not in animal cells.", "",
     "A cell wall, chloroplasts and a large central vacuole.", "The nucleus, the cell membrane and mitochondria."),
    ("List five common HTTP request methods.", "", "GET, POST, PUT, PATCH and DELETE.", "SEND, FETCH, GRAB, PUSH and KILL."),
    ("List the days of the week.", "",
     "Monday, Tuesday, Wednesday, Thursday, Friday, Saturday and Sunday.", "Monday, Tuesday, Thursday, Friday and Sunday."),
    ("List four ways to save water at home.", "",
     "1. Fix leaking taps and pipes.\n2. Take shorter showers.\n3. Run the dishwasher and washing machine only when full.\n4. Turn off the tap while brushing your teeth.",
     "Why bother? There's plenty of water in the ocean."),
    ("Name five vegetables.", "", "Carrot, broccoli, spinach, potato and onion.", "Apple, banana, cherry, grape and mango."),
    ("List the three largest planets in our solar system by diameter, largest first.", "",
     "Jupiter, Saturn and Uranus.", "Earth, Mars and Jupiter."),
    ("Give three tips for writing a clear email.", "",
     "1. Use a specific subject line.\n2. State your main point or request in the first lines.\n3. Keep paragraphs short and end with a clear next step.",
     "Emails are a kind of letter, and letters have been around for centuries, ever since people started writing, and some people like long emails and some like short ones, and there are many email programs, so really it depends on a lot of things and you should just write whatever you feel like."),
    ("List five programming languages.", "", "Python, JavaScript, Java, C and Rust.",
     "HTML, Microsoft Word, Excel, Photoshop and Chrome."),
    ("Name the three primary colors of light.", "", "Red, green and blue (RGB).", "Red, yellow and purple."),
    ("List four renewable energy sources.", "", "Solar, wind, hydroelectric and geothermal energy.", "Coal, oil, natural gas and solar."),
    ("List the first five elements of the periodic table.", "",
     "Hydrogen, helium, lithium, beryllium and boron.", "Hydrogen, oxygen, carbon, nitrogen and gold."),
]

PYTHON = [
    ("Write a Python function that reverses a string.", "",
     "```python\ndef reverse(s):\n    return s[::-1]\n```",
     "```python\ndef reverse(s):\n    return s[::1]\n```"),
    ("Write a Python function that checks whether a number is even.", "",
     "```python\ndef is_even(n):\n    return n % 2 == 0\n```",
     "```python\ndef is_even(n):\n    return n / 2 == 0\n```"),
    ("Write a Python function that returns the factorial of n.", "",
     "```python\ndef factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result\n```",
     "```python\ndef factorial(n):\n    result = 0\n    for i in range(n):\n        result *= i\n    return result\n```"),
    ("How do I get the sum of a list of numbers in Python?", "",
     "Use the built-in sum():\n\n```python\ntotal = sum([3, 5, 7])  # 15\n```",
     "You need to install numpy; Python cannot add up a list by itself."),
    ("How do I find the largest number in a Python list?", "",
     "Use max():\n\n```python\nnumbers = [4, 17, 9]\nprint(max(numbers))  # 17\n```",
     "```python\nnumbers.sort()\nprint(numbers[0])\n```"),
    ("Show how to read a text file line by line in Python.", "",
     "```python\nwith open(\"notes.txt\", encoding=\"utf-8\") as f:\n    for line in f:\n        print(line.rstrip())\n```\nThe with block closes the file for you.",
     "```python\nf = open(\"notes.txt\")\nprint(f.readline())\n```"),
    ("Write a Python function that counts the words in a string.", "",
     "```python\ndef count_words(text):\n    return len(text.split())\n```",
     "```python\ndef count_words(text):\n    return len(text)\n```"),
    ("Use a list comprehension to make a list of the squares of 1 to 10.", "",
     "```python\nsquares = [n ** 2 for n in range(1, 11)]\n```",
     "```python\nsquares = [n * 2 for n in range(10)]\n```"),
    ("How do I build a dictionary from a list of keys and a list of values?", "",
     "Use zip():\n\n```python\nkeys = [\"a\", \"b\"]\nvalues = [1, 2]\nd = dict(zip(keys, values))  # {'a': 1, 'b': 2}\n```",
     "```python\nd = keys + values\n```"),
    ("Remove duplicates from a Python list while keeping the original order.", "",
     "dict.fromkeys() keeps insertion order:\n\n```python\nitems = [3, 1, 3, 2, 1]\nunique = list(dict.fromkeys(items))  # [3, 1, 2]\n```",
     "```python\nunique = list(set(items))  # keeps the original order\n```"),
    ("Write a Python function that returns the first n Fibonacci numbers.", "",
     "```python\ndef fibonacci(n):\n    seq = []\n    a, b = 0, 1\n    for _ in range(n):\n        seq.append(a)\n        a, b = b, a + b\n    return seq\n```",
     "```python\ndef fibonacci(n):\n    return [i * 2 for i in range(n)]\n```"),
    ("Write a Python function that checks whether a string is a palindrome, ignoring case.", "",
     "```python\ndef is_palindrome(s):\n    s = s.lower()\n    return s == s[::-1]\n```",
     "```python\ndef is_palindrome(s):\n    return s == s.upper()\n```"),
    ("Write a Python function that converts Celsius to Fahrenheit.", "",
     "```python\ndef c_to_f(celsius):\n    return celsius * 9 / 5 + 32\n```",
     "```python\ndef c_to_f(celsius):\n    return (celsius - 32) * 5 / 9\n```"),
    ("Sort a list of dictionaries called people by the 'age' key in Python.", "",
     "```python\npeople.sort(key=lambda p: p[\"age\"])\n```\nUse sorted(people, key=...) instead to get a new list.",
     "```python\npeople.sort(\"age\")\n```"),
    ("How do I merge two dictionaries in Python 3.9 or later?", "",
     "Use the | operator: merged = a | b. Keys in b override those in a. On older versions, use {**a, **b}.",
     "Use merged = a + b."),
    ("Write FizzBuzz in Python for the numbers 1 to 15.", "",
     "```python\nfor i in range(1, 16):\n    if i % 15 == 0:\n        print(\"FizzBuzz\")\n    elif i % 3 == 0:\n        print(\"Fizz\")\n    elif i % 5 == 0:\n        print(\"Buzz\")\n    else:\n        print(i)\n```",
     "```python\nfor i in range(1, 16):\n    if i % 3 == 0:\n        print(\"Fizz\")\n    elif i % 5 == 0:\n        print(\"Buzz\")\n    elif i % 15 == 0:\n        print(\"FizzBuzz\")\n    else:\n        print(i)\n```"),
    ("How do I swap two variables in Python?", "",
     "Use tuple unpacking:\n\n```python\na, b = b, a\n```",
     "```python\na = b\nb = a\n```"),
    ("Flatten a list of lists in Python.", "",
     "```python\nflat = [x for sub in nested for x in sub]\n```\nFor example, [[1, 2], [3]] becomes [1, 2, 3].",
     "```python\nflat = list(nested)\n```"),
    ("Count how often each word appears in a list using Python.", "",
     "Use collections.Counter:\n\n```python\nfrom collections import Counter\ncounts = Counter([\"a\", \"b\", \"a\"])  # Counter({'a': 2, 'b': 1})\n```",
     "Python has no way to count items. Write them on paper."),
    ("Write a Python dictionary called data to a JSON file.", "",
     "```python\nimport json\n\nwith open(\"data.json\", \"w\", encoding=\"utf-8\") as f:\n    json.dump(data, f, indent=2)\n```",
     "```python\nopen(\"data.json\").write(data)\n```"),
    ("How do I convert a string to uppercase in Python?", "",
     "Call its upper() method: \"hello\".upper() returns \"HELLO\".", "Use uppercase(\"hello\")."),
    ("Find the index of an item in a Python list.", "",
     "Use list.index(): [\"a\", \"b\", \"c\"].index(\"b\") returns 1. It raises ValueError if the item is missing.",
     "Use list.find(\"b\"), which returns -1 if the item is missing."),
    ("Keep only the even numbers from a list called numbers in Python.", "",
     "```python\nevens = [n for n in numbers if n % 2 == 0]\n```",
     "```python\nevens = [n for n in numbers if n % 2]\n```"),
    ("How do I handle division by zero in Python?", "",
     "Catch ZeroDivisionError:\n\n```python\ntry:\n    result = a / b\nexcept ZeroDivisionError:\n    result = None\n```",
     "Python never raises an error for division by zero; it just returns infinity."),
    ("How do I get today's date in Python?", "",
     "```python\nfrom datetime import date\n\nprint(date.today())  # e.g. 2024-05-01\n```",
     "```python\nimport time\nprint(time.date())\n```"),
]

LANGUAGE = [
    ("Give a synonym for 'happy'.", "", "Joyful.", "Sad."),
    ("What is the antonym of 'ancient'?", "", "Modern.", "Old."),
    ("What is the plural of 'mouse'?", "", "Mice.", "Mouses."),
    ("What is the plural of 'child'?", "", "Children.", "Childs."),
    ("What is the plural of 'cactus'?", "", "Cacti, though \"cactuses\" is also accepted.", "Cactus's."),
    ("What is the past tense of 'go'?", "", "Went.", "Goed."),
    ("What is the past tense of 'swim'?", "", "Swam (the past participle is swum).", "Swimmed."),
    ("Correct the spelling of 'seperate'.", "", "Separate.", "Seperete."),
    ("Correct the spelling of 'accomodate'.", "", "Accommodate, with two c's and two m's.", "Acommodate."),
    ("Correct the spelling of 'occured'.", "", "Occurred.", "Ocurred."),
    ("What is the comparative form of 'good'?", "", "Better; the superlative is best.", "Gooder."),
    ("Give an antonym for 'generous'.", "", "Stingy.", "Kind."),
    ("What is the collective noun for a group of lions?", "", "A pride of lions.", "A flock of lions."),
    ("Which is spelled correctly: 'definately' or 'definitely'?", "", "\"Definitely\" is correct.", "\"Definately\" is correct."),
    ("What does the abbreviation 'e.g.' mean?", "",
     "\"E.g.\" stands for the Latin exempli gratia, meaning \"for example\".", "\"E.g.\" means \"that is\"."),
]


def _hand_items() -> list[dict]:
    items = [
        {"instruction": ins, "input": inp, "output": out, "rejected": rej}
        for group in (DEFINITIONS, REWRITING, FACTS, LISTS, PYTHON, LANGUAGE)
        for ins, inp, out, rej in group
    ]
    items += [
        {"instruction": ins, "input": inp, "output": out, "labels": labels, "answer": answer}
        for ins, inp, out, labels, answer in CLASSIFIED
    ]
    return items


HAND_ITEMS = _hand_items()


# ---------------------------------------------------------------- assemble


def _classification_rejected(item: dict) -> str:
    """A wrong label for a classification item: another of its accepted labels."""
    labels = CLASSIFICATION[item["labels"]]
    right = item["answer"]
    assert right in labels and right in item["output"], item
    wrong = next(label for label in labels if label != right)
    return item["output"].replace(right, wrong, 1) if right in item["output"] else f"{wrong}."


def _unique(rows: list[dict], n: int) -> list[dict]:
    """The first ``n`` rows with distinct (instruction, input): random draws can repeat."""
    seen, out = set(), []
    for row in rows:
        key = (row["instruction"], row["input"])
        if key not in seen:
            seen.add(key)
            out.append(row)
    assert len(out) >= n, (len(out), n)
    return out[:n]


def build() -> tuple[list[dict], list[dict]]:
    rng = random.Random(1234)
    hand = []
    for item in HAND_ITEMS:
        row = dict(item)
        if "labels" in row:
            row["rejected"] = _classification_rejected(row)
        hand.append(row)
    n_mech = N_SAMPLES - len(hand)
    n_arith = n_mech * 4 // 10
    n_conv = n_mech * 3 // 10
    mech = (
        _unique(arithmetic(rng, n_arith + 10), n_arith)
        + _unique(conversions(rng, n_conv + 10), n_conv)
        + _unique(word_and_number_tasks(rng, n_mech - n_arith - n_conv + 10), n_mech - n_arith - n_conv)
    )
    rows = mech + hand
    assert len(rows) == N_SAMPLES, len(rows)
    for row in rows:
        assert len(row["output"].split()) <= 60, row

    samples = [{"instruction": r["instruction"], "input": r["input"], "output": r["output"]} for r in rows]
    rng.shuffle(samples)

    # Preference pairs: about two thirds from hand-written rows, the rest computed mistakes.
    n_mech_pairs = N_PREFERENCES * 35 // 100
    picked = rng.sample(hand, N_PREFERENCES - n_mech_pairs) + rng.sample(mech, n_mech_pairs)
    prefs = []
    for r in picked:
        prompt = r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")
        assert r["rejected"].strip() != r["output"].strip(), r
        prefs.append({"prompt": prompt, "chosen": r["output"], "rejected": r["rejected"]})
    rng.shuffle(prefs)
    return samples, prefs


def _write(path: str, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    samples, prefs = build()
    _write(os.path.join(HERE, "sample_data.jsonl"), samples)
    _write(os.path.join(HERE, "preferences.jsonl"), prefs)
    print(f"wrote {len(samples)} samples and {len(prefs)} preference pairs to {HERE}")


if __name__ == "__main__":
    main()
